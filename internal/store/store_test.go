package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/model"
)

// t0 is the start of every test's fake clock.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)

// openTest opens a store in a fresh directory whose clock starts at t0 and
// advances a second per call. It returns the path too, for reopening.
func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shoal.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	s.now = fakeClock()
	return s, path
}

func fakeClock() func() time.Time {
	var mu sync.Mutex
	now := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}
}

func dep(project, id string, minute int) Deployment {
	cfg := model.DefaultFunctionConfig()
	cfg.MinInstances = minute // something that differs per deployment
	return Deployment{ID: id, Project: project, CreatedAt: t0.Add(time.Duration(minute) * time.Minute),
		Functions: []model.Function{{File: "index.js", Bundle: ".shoal-index.js.mjs", Config: cfg}}}
}

func ids(ds []Deployment) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func TestStore_Deploy(t *testing.T) {
	tests := []struct {
		name        string
		deploys     []Deployment
		wantErr     error // of the last deploy
		wantCurrent string
		wantIDs     []string // Deployments, newest first
	}{
		{
			name:        "first",
			deploys:     []Deployment{dep("api", "d1", 1)},
			wantCurrent: "d1",
			wantIDs:     []string{"d1"},
		},
		{
			name:        "second_moves_current",
			deploys:     []Deployment{dep("api", "d1", 1), dep("api", "d2", 2)},
			wantCurrent: "d2",
			wantIDs:     []string{"d2", "d1"},
		},
		{
			name:        "same_id_is_idempotent",
			deploys:     []Deployment{dep("api", "d1", 1), dep("api", "d1", 1), dep("api", "d1", 1)},
			wantCurrent: "d1",
			wantIDs:     []string{"d1"},
		},
		{
			name:        "redeploy_older_id_rolls_back",
			deploys:     []Deployment{dep("api", "d1", 1), dep("api", "d2", 2), dep("api", "d1", 1)},
			wantCurrent: "d1",
			wantIDs:     []string{"d2", "d1"},
		},
		{
			name:        "id_of_another_project_conflicts",
			deploys:     []Deployment{dep("other", "d1", 1), dep("api", "d2", 2), dep("api", "d1", 3)},
			wantErr:     ErrConflict,
			wantCurrent: "d2",
			wantIDs:     []string{"d2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTest(t)
			ctx := t.Context()
			var err error
			for _, d := range tt.deploys {
				err = s.Deploy(ctx, d)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("last Deploy: got %v, want %v", err, tt.wantErr)
			}

			p, err := s.Project(ctx, "api")
			if err != nil {
				t.Fatalf("Project: %v", err)
			}
			if got, want := p.Current, tt.wantCurrent; got != want {
				t.Errorf("Current: got %q, want %q", got, want)
			}
			ds, err := s.Deployments(ctx, "api")
			if err != nil {
				t.Fatalf("Deployments: %v", err)
			}
			if got, want := ids(ds), tt.wantIDs; !reflect.DeepEqual(got, want) {
				t.Errorf("Deployments: got %v, want %v", got, want)
			}
		})
	}
}

func TestStore_DeployUpdatesProjectTimes(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	for _, d := range []Deployment{dep("api", "d1", 1), dep("api", "d2", 2)} {
		if err := s.Deploy(ctx, d); err != nil {
			t.Fatalf("Deploy %s: %v", d.ID, err)
		}
	}
	got, err := s.Project(ctx, "api")
	if err != nil {
		t.Fatalf("Project: %v", err)
	}
	// The fake clock ticks once per Deploy.
	want := Project{Name: "api", Current: "d2", CreatedAt: t0.Add(time.Second), UpdatedAt: t0.Add(2 * time.Second)}
	if got != want {
		t.Errorf("Project: got %+v, want %+v", got, want)
	}
}

func TestStore_Reopen(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	want := dep("api", "d1", 1)
	if err := s.Deploy(ctx, want); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	if _, err := s.AppendLogs(ctx, []LogLine{{Time: t0, Project: "api", Stream: "stdout", Message: "hi"}}); err != nil {
		t.Fatalf("AppendLogs: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()

	t.Run("deployment", func(t *testing.T) {
		got, err := s.Deployment(ctx, "d1")
		if err != nil {
			t.Fatalf("Deployment: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Deployment: got %+v, want %+v", got, want)
		}
		if got, want := got.CreatedAt.Location(), time.UTC; got != want {
			t.Errorf("CreatedAt location: got %v, want %v", got, want)
		}
	})
	t.Run("project", func(t *testing.T) {
		ps, err := s.Projects(ctx)
		if err != nil {
			t.Fatalf("Projects: %v", err)
		}
		if got, want := len(ps), 1; got != want {
			t.Fatalf("len(Projects): got %d, want %d", got, want)
		}
		if got, want := ps[0].Current, "d1"; got != want {
			t.Errorf("Current: got %q, want %q", got, want)
		}
	})
	t.Run("logs", func(t *testing.T) {
		ls, err := s.Logs(ctx, "api", 0, 0)
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		if got, want := len(ls), 1; got != want {
			t.Fatalf("len(Logs): got %d, want %d", got, want)
		}
		if got, want := ls[0].Message, "hi"; got != want {
			t.Errorf("Message: got %q, want %q", got, want)
		}
	})
	t.Run("pragmas", func(t *testing.T) {
		var mode string
		var version int
		if err := s.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := s.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
			t.Fatal(err)
		}
		if got, want := mode, "wal"; got != want {
			t.Errorf("journal_mode: got %q, want %q", got, want)
		}
		if got, want := version, len(migrations); got != want {
			t.Errorf("user_version: got %d, want %d", got, want)
		}
	})
}

func TestOpen(t *testing.T) {
	t.Run("path_needing_escapes", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a b?c#d%20")
		path := filepath.Join(dir, "x.db")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		if err := s.Deploy(t.Context(), dep("api", "d1", 1)); err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: got no file, want the database", path)
		}
	})
	t.Run("newer_schema_is_refused", func(t *testing.T) {
		s, path := openTest(t)
		if _, err := s.db.ExecContext(t.Context(), fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations)+1)); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if s, err := Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open: got nil error, want a schema version error")
		}
	})
}

func TestStore_NotFound(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.Deploy(ctx, dep("api", "d1", 1)); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"project", func() error { _, err := s.Project(ctx, "nope"); return err }},
		{"deployment", func() error { _, err := s.Deployment(ctx, "nope"); return err }},
		{"delete_project", func() error { return s.DeleteProject(ctx, "nope") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := tt.call(), ErrNotFound; !errors.Is(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	t.Run("deployments_of_missing_project_is_empty", func(t *testing.T) {
		ds, err := s.Deployments(ctx, "nope")
		if got, want := len(ds), 0; err != nil || got != want {
			t.Errorf("Deployments: got %d, %v, want %d, nil", got, err, want)
		}
	})
}

func TestStore_DeleteProject(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	for _, d := range []Deployment{dep("api", "d1", 1), dep("api", "d2", 2), dep("web", "w1", 3)} {
		if err := s.Deploy(ctx, d); err != nil {
			t.Fatalf("Deploy %s: %v", d.ID, err)
		}
	}
	if _, err := s.AppendLogs(ctx, []LogLine{
		{Project: "api", Message: "a"}, {Project: "web", Message: "w"}, {Project: "api", Message: "b"},
	}); err != nil {
		t.Fatalf("AppendLogs: %v", err)
	}
	if err := s.DeleteProject(ctx, "api"); err != nil {
		t.Fatalf("DeleteProject: %v", err)
	}

	count := func(project string) (projects, deployments, logs int) {
		ps, _ := s.Projects(ctx)
		for _, p := range ps {
			if p.Name == project {
				projects++
			}
		}
		ds, _ := s.Deployments(ctx, project)
		ls, _ := s.Logs(ctx, project, 0, 0)
		return projects, len(ds), len(ls)
	}
	tests := []struct {
		project               string
		projects, deps, lines int
	}{
		{"api", 0, 0, 0},
		{"web", 1, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.project, func(t *testing.T) {
			p, d, l := count(tt.project)
			if got, want := [3]int{p, d, l}, [3]int{tt.projects, tt.deps, tt.lines}; got != want {
				t.Errorf("projects, deployments, logs: got %v, want %v", got, want)
			}
		})
	}
	t.Run("deployment_gone", func(t *testing.T) {
		if _, err := s.Deployment(ctx, "d1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Deployment: got %v, want %v", err, ErrNotFound)
		}
	})
	t.Run("twice", func(t *testing.T) {
		if err := s.DeleteProject(ctx, "api"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteProject: got %v, want %v", err, ErrNotFound)
		}
	})
}

// appendN appends n lines to project, messages "0", "1", ..., and returns
// their IDs.
func appendN(t *testing.T, s *Store, project string, n int) []int64 {
	t.Helper()
	lines := make([]LogLine, n)
	for i := range lines {
		lines[i] = LogLine{Time: t0.Add(time.Duration(i)), Project: project, Stream: "stdout", Message: fmt.Sprint(i)}
	}
	got, err := s.AppendLogs(t.Context(), lines)
	if err != nil {
		t.Fatalf("AppendLogs: %v", err)
	}
	var out []int64
	for _, l := range got {
		out = append(out, l.ID)
	}
	return out
}

func logIDs(t *testing.T, s *Store, project string, afterID int64, limit int) []int64 {
	t.Helper()
	ls, err := s.Logs(t.Context(), project, afterID, limit)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	var out []int64
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

func TestStore_AppendLogs(t *testing.T) {
	s, _ := openTest(t)
	in := []LogLine{{
		Time: t0, Project: "api", Deployment: "d1", Instance: "i1", Invocation: "v1", Stream: "stderr", Message: "boom",
	}}
	out, err := s.AppendLogs(t.Context(), in)
	if err != nil {
		t.Fatalf("AppendLogs: %v", err)
	}
	if got, want := in[0].ID, int64(0); got != want {
		t.Errorf("input ID: got %d, want %d (unchanged)", got, want)
	}
	got, err := s.Logs(t.Context(), "api", 0, 10)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	if want := out; !reflect.DeepEqual(got, want) {
		t.Errorf("Logs: got %+v, want %+v", got, want)
	}
}

func TestStore_Logs(t *testing.T) {
	s, _ := openTest(t)
	api := appendN(t, s, "api", 3)
	web := appendN(t, s, "web", 2)
	api = append(api, appendN(t, s, "api", 2)...) // interleaved with web's IDs

	tests := []struct {
		name    string
		project string
		afterID int64
		limit   int
		want    []int64
	}{
		{"all", "api", 0, 0, api},
		{"other_project", "web", 0, 0, web},
		{"after", "api", api[1], 0, api[2:]},
		{"after_gap", "api", web[0], 0, api[3:]},
		{"limit", "api", 0, 2, api[:2]},
		{"after_and_limit", "api", api[0], 2, api[1:3]},
		{"after_last", "api", api[4], 10, nil},
		{"unknown_project", "nope", 0, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := logIDs(t, s, tt.project, tt.afterID, tt.limit), tt.want; !reflect.DeepEqual(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestStore_TrimLogs(t *testing.T) {
	tests := []struct {
		name string
		keep int
		want func(ids []int64) []int64
	}{
		{"keep_some", 2, func(ids []int64) []int64 { return ids[3:] }},
		{"keep_more_than_there_are", 10, func(ids []int64) []int64 { return ids }},
		{"keep_exactly_all", 5, func(ids []int64) []int64 { return ids }},
		{"keep_none", 0, func([]int64) []int64 { return nil }},
		{"keep_negative", -1, func([]int64) []int64 { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTest(t)
			ids := appendN(t, s, "api", 5)
			web := appendN(t, s, "web", 3)
			if err := s.TrimLogs(t.Context(), "api", tt.keep); err != nil {
				t.Fatalf("TrimLogs: %v", err)
			}
			if got, want := logIDs(t, s, "api", 0, 0), tt.want(ids); !reflect.DeepEqual(got, want) {
				t.Errorf("api: got %v, want %v", got, want)
			}
			if got, want := logIDs(t, s, "web", 0, 0), web; !reflect.DeepEqual(got, want) {
				t.Errorf("web (untouched): got %v, want %v", got, want)
			}
			// IDs keep increasing after a trim, so followers never miss lines.
			next := appendN(t, s, "api", 1)
			if got, want := next[0], ids[len(ids)-1]; got <= want {
				t.Errorf("ID after trim: got %d, want more than %d", got, want)
			}
		})
	}
}

func TestStore_AppendLogsConcurrent(t *testing.T) {
	s, _ := openTest(t)
	const writers, batches, perBatch = 8, 10, 5

	start := make(chan struct{})
	errCh := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			var last int64
			for b := range batches {
				lines := make([]LogLine, perBatch)
				for i := range lines {
					lines[i] = LogLine{Project: "api", Instance: fmt.Sprint(w), Message: fmt.Sprint(b, i)}
				}
				got, err := s.AppendLogs(context.Background(), lines)
				if err != nil {
					errCh <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				for _, l := range got {
					if l.ID <= last {
						errCh <- fmt.Errorf("writer %d: ID %d after %d", w, l.ID, last)
						return
					}
					last = l.ID
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Error(err)
	}

	got := logIDs(t, s, "api", 0, 0)
	if got, want := len(got), writers*batches*perBatch; got != want {
		t.Fatalf("lines: got %d, want %d", got, want)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("Logs not in ID order at %d: %d after %d", i, got[i], got[i-1])
		}
	}
}

func TestStore_DeploymentSpec(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	cfg := model.DefaultFunctionConfig()
	d := Deployment{ID: "d1", Project: "p", CreatedAt: t0, Routed: true, Env: []string{"A=1", "B=x=y"},
		Functions: []model.Function{
			{File: "api/a.ts", Bundle: "api/.shoal-a.ts.mjs", Config: cfg},
			{File: "api/[id].js", Bundle: "api/.shoal-[id].js.mjs", Config: cfg.With(model.ConfigPatch{MemoryMB: new(512)})},
		}}
	if err := s.Deploy(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := s.Deployment(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Errorf("Deployment = %+v, want %+v", got, d)
	}
	if err := s.Deploy(ctx, Deployment{ID: "d2", Project: "p"}); err == nil {
		t.Error("Deploy of a deployment without functions succeeded")
	}
}

func TestStore_DeploymentFromBeforeSpec(t *testing.T) {
	ctx := t.Context()
	s, _ := openTest(t)
	cfg := model.DefaultFunctionConfig()
	cfg.MemoryMB = 256
	if _, err := s.db.ExecContext(ctx, `INSERT INTO projects (name, current, created_at, updated_at) VALUES ('p', 'd0', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO deployments (id, project, created_at, config) VALUES ('d0', 'p', 0, ?)`,
		`{"maxConcurrency":100,"maxDuration":60000000000,"memoryMB":256,"minInstances":0}`); err != nil {
		t.Fatal(err)
	}
	got, err := s.Deployment(ctx, "d0")
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Function{{Bundle: "index.mjs", Config: cfg}}
	if got.Routed || !reflect.DeepEqual(got.Functions, want) {
		t.Errorf("Deployment = %+v, want one function %+v", got, want)
	}
}
