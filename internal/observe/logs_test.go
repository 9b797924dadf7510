package observe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/store"
)

// openStore opens a real store in the test's temporary folder.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "shoal.db"))
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func logLine(project, msg string) store.LogLine {
	return store.LogLine{Time: t0, Project: project, Deployment: "d1", Instance: "i1", Invocation: "inv1", Stream: "stdout", Message: msg}
}

func messages(lines []store.LogLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, l.Message)
	}
	return out
}

// spyStore is a real store that reports, after each call, how many lines
// were appended to it or read from it.
type spyStore struct {
	*store.Store
	appended chan int
	read     chan int
}

func newSpy(st *store.Store) spyStore {
	return spyStore{st, make(chan int, 100), make(chan int, 100)}
}

func (s spyStore) AppendLogs(ctx context.Context, lines []store.LogLine) ([]store.LogLine, error) {
	out, err := s.Store.AppendLogs(ctx, lines)
	s.appended <- len(lines)
	return out, err
}

func (s spyStore) Logs(ctx context.Context, project string, afterID int64, limit int) ([]store.LogLine, error) {
	out, err := s.Store.Logs(ctx, project, afterID, limit)
	s.read <- len(out)
	return out, err
}

// next returns the next count on ch.
func next(t *testing.T, ch <-chan int, what string) int {
	t.Helper()
	select {
	case n := <-ch:
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after 10 s", what)
	}
	return 0
}

// result is what a Read in a goroutine returned.
type result struct {
	lines []store.LogLine
	err   error
}

func readAsync(ctx context.Context, l *Logs, project string, after int64) <-chan result {
	ch := make(chan result, 1)
	go func() {
		lines, err := l.Read(ctx, project, after, 100, true)
		ch <- result{lines, err}
	}()
	return ch
}

// blocked fails the test if ch already has a result: the Read must still
// be waiting. It cannot prove the Read will not return later, but every
// test that uses it checks the result that ends the wait.
func blocked(t *testing.T, ch <-chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: Read returned %v, %v; want it still waiting", what, messages(r.lines), r.err)
	default:
	}
}

func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Read still waiting after 10 s")
	}
	return result{}
}

func TestLogs_AddFlush(t *testing.T) {
	tests := []struct {
		name    string
		add     []store.LogLine
		project string
		after   int64
		want    []string
	}{
		{"none", nil, "app", 0, nil},
		{"one", []store.LogLine{logLine("app", "a")}, "app", 0, []string{"a"}},
		{"in_order", []store.LogLine{logLine("app", "a"), logLine("app", "b"), logLine("app", "c")}, "app", 0, []string{"a", "b", "c"}},
		{"only_the_project", []store.LogLine{logLine("app", "a"), logLine("other", "x"), logLine("app", "b")}, "app", 0, []string{"a", "b"}},
		{"after", []store.LogLine{logLine("app", "a"), logLine("app", "b"), logLine("app", "c")}, "app", 1, []string{"b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			l := NewLogs(st, nil)
			for _, line := range tt.add {
				l.Add(line)
			}
			if got, err := st.Logs(t.Context(), tt.project, 0, 0); err != nil || len(got) != 0 {
				t.Fatalf("before Flush the store has %v, %v; want nothing", messages(got), err)
			}
			l.Flush(t.Context())
			got, err := l.Read(t.Context(), tt.project, tt.after, 100, false)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(messages(got), tt.want) {
				t.Errorf("got %q, want %q", messages(got), tt.want)
			}
			for _, g := range got {
				if g.ID <= tt.after || !g.Time.Equal(t0) || g.Instance != "i1" || g.Invocation != "inv1" || g.Stream != "stdout" || g.Deployment != "d1" {
					t.Errorf("got line %+v, want every field kept and an id above %d", g, tt.after)
				}
			}
			// The pending lines went with the first Flush: a second one
			// stores nothing more.
			before, err := st.Logs(t.Context(), tt.project, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			l.Flush(t.Context())
			after, err := st.Logs(t.Context(), tt.project, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(after, before) {
				t.Errorf("a second Flush changed the stored lines from %q to %q", messages(before), messages(after))
			}
		})
	}
}

func TestLogs_ReadLimit(t *testing.T) {
	st := openStore(t)
	l := NewLogs(st, nil)
	for i := range 5 {
		l.Add(logLine("app", fmt.Sprint(i)))
	}
	l.Flush(t.Context())
	got, err := l.Read(t.Context(), "app", 0, 2, true)
	if want := []string{"0", "1"}; err != nil || !reflect.DeepEqual(messages(got), want) {
		t.Errorf("got %q, %v; want %q", messages(got), err, want)
	}
}

// TestLogs_ReadWait drives Flush by hand: a waiting Read returns with the
// first flush that stores a line of its project, and not before.
func TestLogs_ReadWait(t *testing.T) {
	spy := newSpy(openStore(t))
	l := NewLogs(spy, nil)
	l.Add(logLine("app", "old"))
	l.Flush(t.Context())
	next(t, spy.appended, "append")
	old, err := l.Read(t.Context(), "app", 0, 100, false)
	if err != nil || len(old) != 1 {
		t.Fatalf("got %v, %v; want the old line", messages(old), err)
	}
	next(t, spy.read, "read")

	ch := readAsync(t.Context(), l, "app", old[0].ID)
	// Once its first read found nothing, the Read waits for a flush.
	if n := next(t, spy.read, "first read"); n != 0 {
		t.Fatalf("first read found %d lines, want 0", n)
	}

	// An empty flush stores nothing and wakes no one.
	l.Flush(t.Context())
	blocked(t, ch, "after an empty flush")

	// Another project's lines wake the reader, which finds nothing and
	// waits again.
	l.Add(logLine("other", "x"))
	l.Flush(t.Context())
	if n := next(t, spy.read, "read after other project's lines"); n != 0 {
		t.Fatalf("read after other project's lines found %d lines, want 0", n)
	}
	blocked(t, ch, "after other project's lines")

	// A line added but not flushed is not seen.
	l.Add(logLine("app", "new"))
	blocked(t, ch, "after Add without Flush")

	l.Flush(t.Context())
	r := await(t, ch)
	if want := []string{"new"}; r.err != nil || !reflect.DeepEqual(messages(r.lines), want) {
		t.Errorf("got %q, %v; want %q", messages(r.lines), r.err, want)
	}
	select {
	case n := <-spy.read:
		if n != 1 {
			t.Errorf("last read found %d lines, want 1", n)
		}
	default:
		t.Error("no last read")
	}
	select {
	case n := <-spy.read:
		t.Errorf("an extra read found %d lines: the empty flush woke the reader", n)
	default:
	}
}

// TestLogs_ReadWaitRun is TestLogs_ReadWait with Run flushing on a tick
// the test sends.
func TestLogs_ReadWaitRun(t *testing.T) {
	spy := newSpy(openStore(t))
	l := NewLogs(spy, nil)
	tick := make(chan time.Time) // unbuffered: a send returns once Run took it
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx, tick) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	ch := readAsync(t.Context(), l, "app", 0)
	if n := next(t, spy.read, "first read"); n != 0 {
		t.Fatalf("first read found %d lines, want 0", n)
	}
	l.Add(logLine("other", "x"))
	tick <- t0
	if n := next(t, spy.appended, "append"); n != 1 {
		t.Fatalf("tick stored %d lines, want 1", n)
	}
	if n := next(t, spy.read, "read after other project's lines"); n != 0 {
		t.Fatalf("read after other project's lines found %d lines, want 0", n)
	}
	blocked(t, ch, "after a tick with other project's lines")

	l.Add(logLine("app", "a"))
	l.Add(logLine("app", "b"))
	tick <- t0
	r := await(t, ch)
	if want := []string{"a", "b"}; r.err != nil || !reflect.DeepEqual(messages(r.lines), want) {
		t.Errorf("got %q, %v; want %q", messages(r.lines), r.err, want)
	}
	if n := next(t, spy.appended, "append"); n != 2 {
		t.Errorf("tick stored %d lines, want 2", n)
	}
}

// TestLogs_RunFlushesOnStop checks that Run stores what is left when its
// ctx ends, though that ctx is done.
func TestLogs_RunFlushesOnStop(t *testing.T) {
	st := openStore(t)
	l := NewLogs(st, nil)
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx, nil) }()
	l.Add(logLine("app", "last words"))
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10 s after its ctx ended")
	}
	got, err := st.Logs(t.Context(), "app", 0, 0)
	if want := []string{"last words"}; err != nil || !reflect.DeepEqual(messages(got), want) {
		t.Errorf("got %q, %v; want %q", messages(got), err, want)
	}
}

func TestLogs_ReadWaitCanceled(t *testing.T) {
	tests := []struct {
		name string
		ctx  func(context.Context) (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", context.WithCancel, context.Canceled},
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 50*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spy := newSpy(openStore(t))
			l := NewLogs(spy, nil)
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			ch := readAsync(ctx, l, "app", 0)
			if tt.want == context.Canceled {
				// Cancel once the Read waits.
				if n := next(t, spy.read, "first read"); n != 0 {
					t.Fatalf("first read found %d lines, want 0", n)
				}
				blocked(t, ch, "before cancel")
				cancel()
			}
			r := await(t, ch)
			if !errors.Is(r.err, tt.want) || len(r.lines) != 0 {
				t.Errorf("got %q, %v; want no lines, %v", messages(r.lines), r.err, tt.want)
			}
		})
	}
}

// TestLogs_ReadNoWaitIsImmediate checks that Read without wait returns at
// once when there is nothing.
func TestLogs_ReadNoWaitIsImmediate(t *testing.T) {
	l := NewLogs(openStore(t), nil)
	got, err := l.Read(t.Context(), "app", 0, 100, false)
	if err != nil || len(got) != 0 {
		t.Errorf("got %q, %v; want nothing, nil", messages(got), err)
	}
}

// batchStore is a LogStore that keeps only the size and ends of each
// batch: storing MaxPending lines in SQLite takes seconds under -race, and
// the bound is about what Logs holds, not what the store does with it.
type batchStore struct {
	batches chan []string // first and last message, and the size as text
}

func (s batchStore) AppendLogs(_ context.Context, lines []store.LogLine) ([]store.LogLine, error) {
	s.batches <- []string{fmt.Sprint(len(lines)), lines[0].Message, lines[len(lines)-1].Message}
	return lines, nil
}

func (s batchStore) Logs(context.Context, string, int64, int) ([]store.LogLine, error) {
	return nil, nil
}

func (s batchStore) TrimLogs(context.Context, string, int) error { return nil }

func TestLogs_MaxPending(t *testing.T) {
	st := batchStore{make(chan []string, 10)}
	var logs syncBuffer
	l := NewLogs(st, slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range MaxPending + 10 {
		l.Add(logLine("app", fmt.Sprint(i)))
	}
	l.mu.Lock()
	pending, dropped, capacity := len(l.pending), l.dropped, cap(l.pending)
	l.mu.Unlock()
	if pending != MaxPending || dropped != 10 {
		t.Errorf("got %d pending, %d dropped; want %d, 10", pending, dropped, MaxPending)
	}
	if capacity > 2*MaxPending {
		t.Errorf("pending capacity %d, want it near %d", capacity, MaxPending)
	}

	l.Flush(t.Context())
	// The first lines are kept, the last dropped.
	if got, want := <-st.batches, []string{fmt.Sprint(MaxPending), "0", fmt.Sprint(MaxPending - 1)}; !reflect.DeepEqual(got, want) {
		t.Errorf("got batch (size, first, last) %q, want %q", got, want)
	}
	if !strings.Contains(logs.String(), "dropped") || !strings.Contains(logs.String(), "lines=10") {
		t.Errorf("log %q does not report the 10 dropped lines", logs.String())
	}

	// A flush makes room again and resets the count.
	l.Add(logLine("app", "after"))
	l.mu.Lock()
	pending, dropped = len(l.pending), l.dropped
	l.mu.Unlock()
	if pending != 1 || dropped != 0 {
		t.Errorf("after Flush: got %d pending, %d dropped; want 1, 0", pending, dropped)
	}
	l.Flush(t.Context())
	if got, want := <-st.batches, []string{"1", "after", "after"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got batch %q, want %q", got, want)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestLogs_TrimsOldLines(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "trim.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := NewLogs(st, nil)
	l.keep = 10
	ctx := context.Background()
	// Each flush stores one line; the trim after trimEvery flushes keeps
	// the newest 10.
	for i := range trimEvery {
		l.Add(store.LogLine{Project: "p", Message: fmt.Sprint(i)})
		l.Flush(ctx)
	}
	lines, err := st.Logs(ctx, "p", 0, 0)
	if err != nil || len(lines) != 10 {
		t.Fatalf("after %d flushes: %d lines, %v; want the newest 10", trimEvery, len(lines), err)
	}
	if got, want := lines[0].Message, fmt.Sprint(trimEvery-10); got != want {
		t.Errorf("oldest kept line %q, want %q", got, want)
	}
	if l.batches != 0 || len(l.touched) != 0 {
		t.Errorf("after the trim: batches %d, touched %v; want both reset", l.batches, l.touched)
	}
}
