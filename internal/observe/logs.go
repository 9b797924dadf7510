package observe

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/store"
)

// LogStore keeps log lines.
type LogStore interface {
	AppendLogs(ctx context.Context, lines []store.LogLine) ([]store.LogLine, error)
	Logs(ctx context.Context, project string, afterID int64, limit int) ([]store.LogLine, error)
	TrimLogs(ctx context.Context, project string, keep int) error
}

// MaxLinesPerProject is how many of each project's newest lines are kept;
// older ones are deleted every trimEvery stored batches.
const MaxLinesPerProject = 100_000

const trimEvery = 100

// MaxPending bounds the lines waiting to be stored; past it new lines are
// dropped and counted, so a flood of logs cannot exhaust serve's memory.
const MaxPending = 100_000

// Logs collects log lines and stores them in batches.
type Logs struct {
	// immutable
	store LogStore
	log   *slog.Logger
	keep  int // lines kept per project: MaxLinesPerProject

	mu      sync.Mutex
	pending []store.LogLine // guarded by mu
	dropped int             // guarded by mu
	wake    chan struct{}   // guarded by mu; closed after each flush that stored lines

	flushMu sync.Mutex          // serializes Flush
	batches int                 // guarded by flushMu; stored batches since the last trim
	touched map[string]struct{} // guarded by flushMu; projects written since the last trim
}

// NewLogs returns a collector that stores into st.
func NewLogs(st LogStore, log *slog.Logger) *Logs {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Logs{store: st, log: log, keep: MaxLinesPerProject, wake: make(chan struct{}), touched: map[string]struct{}{}}
}

// Add queues one line; it never blocks on storage.
func (l *Logs) Add(line store.LogLine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) >= MaxPending {
		l.dropped++
		return
	}
	l.pending = append(l.pending, line)
}

// Run stores the queued lines on every tick until ctx is done, then stores
// what is left and returns.
func (l *Logs) Run(ctx context.Context, tick <-chan time.Time) error {
	for {
		select {
		case <-ctx.Done():
			l.Flush(context.WithoutCancel(ctx))
			return nil
		case <-tick:
			l.Flush(ctx)
		}
	}
}

// Flush stores the queued lines now and wakes the followers.
func (l *Logs) Flush(ctx context.Context) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	batch, dropped := l.pending, l.dropped
	l.pending, l.dropped = nil, 0
	l.mu.Unlock()
	if dropped > 0 {
		l.log.Warn("log lines dropped: storage fell behind", "lines", dropped)
	}
	if len(batch) == 0 {
		return
	}
	if _, err := l.store.AppendLogs(ctx, batch); err != nil {
		l.log.Error("store log lines", "lines", len(batch), "err", err)
		return
	}
	l.mu.Lock()
	close(l.wake)
	l.wake = make(chan struct{})
	l.mu.Unlock()
	for _, line := range batch {
		l.touched[line.Project] = struct{}{}
	}
	if l.batches++; l.batches >= trimEvery {
		l.batches = 0
		for project := range l.touched {
			if err := l.store.TrimLogs(ctx, project, l.keep); err != nil {
				l.log.Error("trim log lines", "project", project, "err", err)
			}
		}
		clear(l.touched)
	}
}

// Read returns the project's lines after id, at most limit. With wait and
// none there yet, it waits for the next stored batch that has some, or for
// ctx.
func (l *Logs) Read(ctx context.Context, project string, after int64, limit int, wait bool) ([]store.LogLine, error) {
	for {
		l.mu.Lock()
		wake := l.wake
		l.mu.Unlock()
		lines, err := l.store.Logs(ctx, project, after, limit)
		if err != nil || len(lines) > 0 || !wait {
			return lines, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
