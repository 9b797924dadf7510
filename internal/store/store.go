package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/internal/model"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned when the project or deployment asked for does not
// exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by Deploy when the deployment id already belongs to
// another project.
var ErrConflict = errors.New("deployment id belongs to another project")

// busyTimeout is how long a statement waits for another connection's write
// lock before it fails with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// migrations are applied in order; the database's PRAGMA user_version counts
// how many have run. Append only: never edit or reorder an applied entry.
var migrations = []string{
	`CREATE TABLE projects (
		name       TEXT PRIMARY KEY,
		current    TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	) STRICT;
	CREATE TABLE deployments (
		id         TEXT PRIMARY KEY,
		project    TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
		created_at INTEGER NOT NULL,
		config     TEXT NOT NULL
	) STRICT;
	CREATE INDEX deployments_project ON deployments(project, created_at);
	CREATE TABLE logs (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		time       INTEGER NOT NULL,
		project    TEXT NOT NULL,
		deployment TEXT NOT NULL,
		instance   TEXT NOT NULL,
		invocation TEXT NOT NULL,
		stream     TEXT NOT NULL,
		message    TEXT NOT NULL
	) STRICT;
	CREATE INDEX logs_project ON logs(project, id);`,
	// env has no foreign key to projects: a project's variables may be set
	// before its first deploy.
	`CREATE TABLE env (
		project    TEXT NOT NULL,
		name       TEXT NOT NULL,
		value      TEXT NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (project, name)
	) STRICT;`,
	// spec holds what a deployment runs beyond config, as JSON (see
	// deploymentSpec); '' for deployments from before it.
	`ALTER TABLE deployments ADD COLUMN spec TEXT NOT NULL DEFAULT '';`,
}

// legacyBundle is where deployments from before the spec column have their
// one bundle.
const legacyBundle = "index.mjs"

// Deployment is one immutable build of a project.
type Deployment struct {
	ID      string
	Project string
	// CreatedAt is when the deployment was built; zero means Deploy fills in
	// the current time.
	CreatedAt time.Time
	// Routed is true when the functions are a project's api/ files, each
	// at its own route, and false for a project of one function.
	Routed bool
	// Functions are what the deployment runs; at least one.
	Functions []model.Function
	// Env is the project's environment variables as they were when it was
	// deployed, as NAME=VALUE.
	Env []string
}

// deploymentSpec is the JSON of the spec column.
type deploymentSpec struct {
	Routed    bool             `json:"routed,omitempty"`
	Functions []model.Function `json:"functions"`
	Env       []string         `json:"env,omitempty"`
}

// Project is a named function and the deployment that serves it.
type Project struct {
	Name string
	// Current is the id of the deployment that serves the project.
	Current   string
	CreatedAt time.Time
	// UpdatedAt is when Current last changed.
	UpdatedAt time.Time
}

// LogLine is one line a function instance wrote, or one the platform wrote
// about it.
type LogLine struct {
	// ID is assigned by AppendLogs and increases with every line appended;
	// it is never reused.
	ID         int64
	Time       time.Time
	Project    string
	Deployment string
	Instance   string
	Invocation string
	// Stream is "stdout", "stderr" or "system".
	Stream  string
	Message string
}

// Store is the SQLite database. It is safe for concurrent use.
type Store struct {
	// immutable
	db  *sql.DB
	now func() time.Time // the clock for UpdatedAt; tests replace it

	closeOnce sync.Once
	closeErr  error
}

// Open opens the database file at path, creating it if needed, and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// Take the write lock at BEGIN so that two writers queue on the busy
	// timeout instead of one failing when it upgrades a read lock.
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()

	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

// migrate applies the migrations the database has not seen, all in one
// transaction.
func (s *Store) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this binary's %d", version, len(migrations))
		}
		for i := version; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		// PRAGMA takes no parameters; len(migrations) is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	})
}

// Close closes the database. Calling it again returns the first call's error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.db.Close() })
	return s.closeErr
}

// Deploy records d and makes it its project's current deployment, creating
// the project if it is new, in one transaction. Deploying an id the project
// already has (a rollback or a retry) only moves Current; deploying an id
// another project has returns ErrConflict.
func (s *Store) Deploy(ctx context.Context, d Deployment) error {
	now := s.now()
	if d.CreatedAt.IsZero() {
		d.CreatedAt = now
	}
	if len(d.Functions) == 0 {
		return fmt.Errorf("deploy %s: no functions", d.ID)
	}
	// config keeps the first function's, as before there was spec.
	config, err := json.Marshal(d.Functions[0].Config)
	if err != nil {
		return fmt.Errorf("encode config of %s: %w", d.ID, err)
	}
	spec, err := json.Marshal(deploymentSpec{Routed: d.Routed, Functions: d.Functions, Env: d.Env})
	if err != nil {
		return fmt.Errorf("encode spec of %s: %w", d.ID, err)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		// The project goes first: deployments.project references it.
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO projects (name, current, created_at, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET current = excluded.current, updated_at = excluded.updated_at`,
			d.Project, d.ID, toNano(now), toNano(now)); err != nil {
			return fmt.Errorf("upsert project %s: %w", d.Project, err)
		}
		res, err := tx.ExecContext(ctx, `
			INSERT INTO deployments (id, project, created_at, config, spec) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			d.ID, d.Project, toNano(d.CreatedAt), string(config), string(spec))
		if err != nil {
			return fmt.Errorf("insert deployment %s: %w", d.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("insert deployment %s: %w", d.ID, err)
		}
		if n == 1 {
			return nil
		}
		var owner string
		if err := tx.QueryRowContext(ctx, `SELECT project FROM deployments WHERE id = ?`, d.ID).Scan(&owner); err != nil {
			return fmt.Errorf("read owner of deployment %s: %w", d.ID, err)
		}
		if owner != d.Project {
			return fmt.Errorf("deploy %s to %s: owned by %s: %w", d.ID, d.Project, owner, ErrConflict)
		}
		return nil
	})
}

// Project returns the project called name, or ErrNotFound.
func (s *Store) Project(ctx context.Context, name string) (Project, error) {
	row := s.db.QueryRowContext(ctx, `SELECT name, current, created_at, updated_at FROM projects WHERE name = ?`, name)
	p, err := scanProject(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Project{}, fmt.Errorf("project %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Project{}, fmt.Errorf("read project %s: %w", name, err)
	}
	return p, nil
}

// Projects returns every project, ordered by name.
func (s *Store) Projects(ctx context.Context) ([]Project, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, current, created_at, updated_at FROM projects ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return collect(rows, scanProject)
}

// Deployment returns the deployment with the given id, or ErrNotFound.
func (s *Store) Deployment(ctx context.Context, id string) (Deployment, error) {
	row := s.db.QueryRowContext(ctx, `SELECT id, project, created_at, config, spec FROM deployments WHERE id = ?`, id)
	d, err := scanDeployment(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Deployment{}, fmt.Errorf("deployment %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Deployment{}, fmt.Errorf("read deployment %s: %w", id, err)
	}
	return d, nil
}

// Deployments returns the deployments of project, newest first. A project
// that does not exist has none.
func (s *Store) Deployments(ctx context.Context, project string) ([]Deployment, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, project, created_at, config, spec FROM deployments
		WHERE project = ? ORDER BY created_at DESC, rowid DESC`, project)
	if err != nil {
		return nil, fmt.Errorf("list deployments of %s: %w", project, err)
	}
	return collect(rows, scanDeployment)
}

// DeleteProject deletes the project called name with its deployments, its
// logs and its environment variables; a name that has only variables, set
// ahead of a first deploy, is deleted too. It returns ErrNotFound when the
// name has neither.
func (s *Store) DeleteProject(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		// Deleting the project cascades to its deployments.
		deleted := int64(0)
		for _, q := range []string{`DELETE FROM projects WHERE name = ?`, `DELETE FROM env WHERE project = ?`} {
			res, err := tx.ExecContext(ctx, q, name)
			if err != nil {
				return fmt.Errorf("delete project %s: %w", name, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("delete project %s: %w", name, err)
			}
			deleted += n
		}
		if deleted == 0 {
			return fmt.Errorf("project %s: %w", name, ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM logs WHERE project = ?`, name); err != nil {
			return fmt.Errorf("delete logs of %s: %w", name, err)
		}
		return nil
	})
}

// AppendLogs stores lines in one transaction and returns a copy of them with
// their IDs set. It does not check that their project exists.
func (s *Store) AppendLogs(ctx context.Context, lines []LogLine) ([]LogLine, error) {
	if len(lines) == 0 {
		return nil, nil
	}
	out := make([]LogLine, len(lines))
	copy(out, lines)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `
			INSERT INTO logs (time, project, deployment, instance, invocation, stream, message)
			VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("prepare log insert: %w", err)
		}
		defer stmt.Close()
		for i := range out {
			l := &out[i]
			res, err := stmt.ExecContext(ctx, toNano(l.Time), l.Project, l.Deployment, l.Instance, l.Invocation, l.Stream, l.Message)
			if err != nil {
				return fmt.Errorf("insert log line: %w", err)
			}
			if l.ID, err = res.LastInsertId(); err != nil {
				return fmt.Errorf("read log line id: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Logs returns at most limit lines of project whose ID is above afterID, in
// ID order. A limit of zero or less means no limit.
func (s *Store) Logs(ctx context.Context, project string, afterID int64, limit int) ([]LogLine, error) {
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, time, project, deployment, instance, invocation, stream, message FROM logs
		WHERE project = ? AND id > ? ORDER BY id LIMIT ?`, project, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("read logs of %s: %w", project, err)
	}
	return collect(rows, func(r scanner) (LogLine, error) {
		var l LogLine
		var t int64
		err := r.Scan(&l.ID, &t, &l.Project, &l.Deployment, &l.Instance, &l.Invocation, &l.Stream, &l.Message)
		l.Time = fromNano(t)
		return l, err
	})
}

// TrimLogs deletes all but the newest keep lines of project. A keep of zero
// or less deletes them all.
func (s *Store) TrimLogs(ctx context.Context, project string, keep int) error {
	keep = max(keep, 0)
	// The subquery is the id of the newest line to delete, or NULL (delete
	// nothing) when the project has no more than keep lines.
	if _, err := s.db.ExecContext(ctx, `
		DELETE FROM logs WHERE project = ? AND id <= (
			SELECT id FROM logs WHERE project = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`,
		project, project, keep); err != nil {
		return fmt.Errorf("trim logs of %s: %w", project, err)
	}
	return nil
}

// inTx runs fn in a transaction and commits it if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface{ Scan(dest ...any) error }

func scanProject(r scanner) (Project, error) {
	var p Project
	var created, updated int64
	if err := r.Scan(&p.Name, &p.Current, &created, &updated); err != nil {
		return Project{}, err
	}
	p.CreatedAt, p.UpdatedAt = fromNano(created), fromNano(updated)
	return p, nil
}

func scanDeployment(r scanner) (Deployment, error) {
	var d Deployment
	var created int64
	var config, spec string
	if err := r.Scan(&d.ID, &d.Project, &created, &config, &spec); err != nil {
		return Deployment{}, err
	}
	d.CreatedAt = fromNano(created)
	if spec == "" {
		fn := model.Function{Bundle: legacyBundle}
		if err := json.Unmarshal([]byte(config), &fn.Config); err != nil {
			return Deployment{}, fmt.Errorf("decode config of %s: %w", d.ID, err)
		}
		d.Functions = []model.Function{fn}
		return d, nil
	}
	var ds deploymentSpec
	if err := json.Unmarshal([]byte(spec), &ds); err != nil {
		return Deployment{}, fmt.Errorf("decode spec of %s: %w", d.ID, err)
	}
	d.Routed, d.Functions, d.Env = ds.Routed, ds.Functions, ds.Env
	return d, nil
}

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("scan: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rows: %w", err)
	}
	return out, nil
}

// toNano stores t as unix nanoseconds; the zero time is stored as 0.
func toNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNano is the inverse of toNano and returns times in UTC.
func fromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
