package store

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// envOp is one step of an env test: a set, or a delete when del is true.
type envOp struct {
	project, name, value string
	del                  bool
}

// setOp sets name of project to value.
func setOp(project, name, value string) envOp {
	return envOp{project: project, name: name, value: value}
}

// delOp deletes name of project.
func delOp(project, name string) envOp {
	return envOp{project: project, name: name, del: true}
}

func TestStore_Env(t *testing.T) {
	// at is the fake clock's time at its nth tick.
	at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	tests := []struct {
		name    string
		ops     []envOp
		wantErr error // of the last op
		want    []EnvVar
	}{
		{
			name: "none",
			want: nil,
		},
		{
			name: "set",
			ops:  []envOp{setOp("api", "DB_URL", "postgres://db")},
			want: []EnvVar{{"DB_URL", "postgres://db", at(1)}},
		},
		{
			name: "empty_value",
			ops:  []envOp{setOp("api", "EMPTY", "")},
			want: []EnvVar{{"EMPTY", "", at(1)}},
		},
		{
			name: "overwrite_keeps_one_row_and_moves_updated_at",
			ops:  []envOp{setOp("api", "A", "1"), setOp("api", "B", "x"), setOp("api", "A", "2")},
			want: []EnvVar{{"A", "2", at(3)}, {"B", "x", at(2)}},
		},
		{
			name: "ordered_by_name_bytes",
			ops:  []envOp{setOp("api", "b", "1"), setOp("api", "B", "2"), setOp("api", "A_1", "3"), setOp("api", "A", "4"), setOp("api", "_", "5")},
			want: []EnvVar{{"A", "4", at(4)}, {"A_1", "3", at(3)}, {"B", "2", at(2)}, {"_", "5", at(5)}, {"b", "1", at(1)}},
		},
		{
			name: "other_projects_apart",
			ops:  []envOp{setOp("web", "A", "w"), setOp("api", "A", "a"), setOp("apix", "A", "x")},
			want: []EnvVar{{"A", "a", at(2)}},
		},
		{
			name: "value_kept_byte_for_byte",
			ops:  []envOp{setOp("api", "PEM", "-----BEGIN-----\r\n\tline 'quoted' \"x\" é\n-----END-----\n")},
			want: []EnvVar{{"PEM", "-----BEGIN-----\r\n\tline 'quoted' \"x\" é\n-----END-----\n", at(1)}},
		},
		{
			name: "delete",
			ops:  []envOp{setOp("api", "A", "1"), setOp("api", "B", "2"), delOp("api", "A")},
			want: []EnvVar{{"B", "2", at(2)}},
		},
		{
			name: "delete_then_set_again",
			ops:  []envOp{setOp("api", "A", "1"), delOp("api", "A"), setOp("api", "A", "2")},
			want: []EnvVar{{"A", "2", at(2)}},
		},
		{
			name:    "delete_missing",
			ops:     []envOp{setOp("api", "A", "1"), delOp("api", "B")},
			wantErr: ErrNotFound,
			want:    []EnvVar{{"A", "1", at(1)}},
		},
		{
			name:    "delete_twice",
			ops:     []envOp{setOp("api", "A", "1"), delOp("api", "A"), delOp("api", "A")},
			wantErr: ErrNotFound,
			want:    nil,
		},
		{
			name:    "delete_of_another_project",
			ops:     []envOp{setOp("web", "A", "1"), delOp("api", "A")},
			wantErr: ErrNotFound,
			want:    nil,
		},
		{
			name:    "delete_is_case_sensitive",
			ops:     []envOp{setOp("api", "A", "1"), delOp("api", "a")},
			wantErr: ErrNotFound,
			want:    []EnvVar{{"A", "1", at(1)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTest(t)
			ctx := t.Context()
			var err error
			for _, op := range tt.ops {
				if op.del {
					err = s.DeleteEnv(ctx, op.project, op.name)
				} else {
					err = s.SetEnv(ctx, op.project, op.name, op.value, nil)
				}
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("last op: got %v, want %v", err, tt.wantErr)
			}
			got, err := s.Env(ctx, "api")
			if err != nil {
				t.Fatalf("Env: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Env: got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestStore_EnvBeforeDeploy checks that a project's variables may be set
// before it exists, and that its first deploy keeps them.
func TestStore_EnvBeforeDeploy(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.SetEnv(ctx, "api", "A", "1", nil); err != nil {
		t.Fatalf("SetEnv before the project exists: %v", err)
	}
	if err := s.Deploy(ctx, dep("api", "d1", 1)); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	got, err := s.Env(ctx, "api")
	if err != nil {
		t.Fatalf("Env: %v", err)
	}
	if want := []EnvVar{{"A", "1", t0.Add(time.Second)}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Env after deploy: got %+v, want %+v", got, want)
	}
}

func TestStore_DeleteProjectDeletesEnv(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	for _, d := range []Deployment{dep("api", "d1", 1), dep("web", "w1", 2)} {
		if err := s.Deploy(ctx, d); err != nil {
			t.Fatalf("Deploy %s: %v", d.ID, err)
		}
	}
	for _, op := range []envOp{setOp("api", "A", "1"), setOp("api", "B", "2"), setOp("web", "A", "w")} {
		if err := s.SetEnv(ctx, op.project, op.name, op.value, nil); err != nil {
			t.Fatalf("SetEnv %+v: %v", op, err)
		}
	}
	if err := s.DeleteProject(ctx, "api"); err != nil {
		t.Fatalf("DeleteProject: %v", err)
	}
	tests := []struct {
		project string
		want    []string
	}{
		{"api", nil},
		{"web", []string{"A=w"}},
	}
	for _, tt := range tests {
		t.Run(tt.project, func(t *testing.T) {
			vs, err := s.Env(ctx, tt.project)
			if err != nil {
				t.Fatalf("Env: %v", err)
			}
			var got []string
			for _, v := range vs {
				got = append(got, v.Name+"="+v.Value)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Env: got %v, want %v", got, tt.want)
			}
		})
	}
	// A project deployed again under the same name starts without the
	// variables of the one removed.
	t.Run("redeployed", func(t *testing.T) {
		if err := s.Deploy(ctx, dep("api", "d2", 3)); err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		if vs, err := s.Env(ctx, "api"); err != nil || len(vs) != 0 {
			t.Errorf("Env: got %+v, %v, want none", vs, err)
		}
	})
}

// TestStore_DeleteProjectWithOnlyEnv checks that DeleteProject of a
// project that was never deployed deletes the variables set ahead of its
// first deploy, and that a name with neither is ErrNotFound.
func TestStore_DeleteProjectWithOnlyEnv(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.SetEnv(ctx, "api", "A", "1", nil); err != nil {
		t.Fatalf("SetEnv: %v", err)
	}
	if err := s.DeleteProject(ctx, "api"); err != nil {
		t.Fatalf("DeleteProject: %v", err)
	}
	if vs, err := s.Env(ctx, "api"); err != nil || len(vs) != 0 {
		t.Errorf("Env: got %+v, %v, want none", vs, err)
	}
	if err := s.DeleteProject(ctx, "api"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteProject again: got %v, want %v", err, ErrNotFound)
	}
}

func TestStore_EnvSurvivesReopen(t *testing.T) {
	s, path := openTest(t)
	ctx := t.Context()
	for _, op := range []envOp{setOp("api", "B", "2"), setOp("api", "A", "1")} {
		if err := s.SetEnv(ctx, op.project, op.name, op.value, nil); err != nil {
			t.Fatalf("SetEnv %+v: %v", op, err)
		}
	}
	want, err := s.Env(ctx, "api")
	if err != nil {
		t.Fatalf("Env: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	got, err := s.Env(ctx, "api")
	if err != nil {
		t.Fatalf("Env after reopen: %v", err)
	}
	if !reflect.DeepEqual(got, want) || len(got) != 2 {
		t.Errorf("Env after reopen: got %+v, want %+v", got, want)
	}
}

// TestOpen_MigratesVersion1 opens a database made by a binary that knew
// only the first migration: Open adds the env table and keeps the data.
func TestOpen_MigratesVersion1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "shoal.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		migrations[0],
		`INSERT INTO projects (name, current, created_at, updated_at) VALUES ('api', 'd1', 1, 1)`,
		`PRAGMA user_version = 1`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("make a version 1 database: %v", err)
		}
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open a version 1 database: %v", err)
	}
	defer s.Close()
	if p, err := s.Project(ctx, "api"); err != nil || p.Current != "d1" {
		t.Errorf("Project after migrating: got %+v, %v, want current d1", p, err)
	}
	if err := s.SetEnv(ctx, "api", "A", "1", nil); err != nil {
		t.Errorf("SetEnv after migrating: %v", err)
	}
}

// TestStore_SetEnvCheck checks that SetEnv's check sees every variable with
// the new one in place, that its error leaves them as they were, and that
// concurrent sets cannot together pass a limit on the total.
func TestStore_SetEnvCheck(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.SetEnv(ctx, "api", "A", "1", nil); err != nil {
		t.Fatal(err)
	}
	var seen map[string]string
	refuse := errors.New("refused")
	err := s.SetEnv(ctx, "api", "B", "2", func(all map[string]string) error { seen = all; return refuse })
	if !errors.Is(err, refuse) {
		t.Fatalf("SetEnv: got %v, want the check's error", err)
	}
	if !reflect.DeepEqual(seen, map[string]string{"A": "1", "B": "2"}) {
		t.Errorf("check saw %v, want A=1 and B=2", seen)
	}
	if vs, err := s.Env(ctx, "api"); err != nil || len(vs) != 1 {
		t.Errorf("Env after a refused set: %+v, %v; want A alone", vs, err)
	}

	// Ten concurrent sets of 10 bytes each against a limit of 50 in all:
	// A=1 takes 2, so four pass.
	limit := func(all map[string]string) error {
		n := 0
		for k, v := range all {
			n += len(k) + len(v)
		}
		if n > 50 {
			return refuse
		}
		return nil
	}
	var wg sync.WaitGroup
	var passed atomic.Int32
	for i := range 10 {
		wg.Go(func() {
			if s.SetEnv(ctx, "api", fmt.Sprintf("V%d", i), "12345678", limit) == nil {
				passed.Add(1)
			}
		})
	}
	wg.Wait()
	vs, err := s.Env(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	if passed.Load() != 4 || len(vs) != 5 {
		t.Errorf("%d concurrent sets passed, %d variables stored; want 4 and 5", passed.Load(), len(vs))
	}
}
