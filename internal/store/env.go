package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// EnvVar is one environment variable of a project. A deployment takes the
// project's variables as they are when it is made; setting one changes no
// deployment that already exists.
type EnvVar struct {
	Name  string
	Value string
	// UpdatedAt is when the variable was last set.
	UpdatedAt time.Time
}

// SetEnv sets the environment variable name of project to value, adding it
// or replacing its value. check, unless nil, sees all of the project's
// variables with the new value in place, in the same transaction, and an
// error from it leaves them as they were: two concurrent calls cannot both
// pass a limit on the total. SetEnv does not check that the project exists,
// nor that name and value are valid (see model.ValidateEnvName).
func (s *Store) SetEnv(ctx context.Context, project, name, value string, check func(vars map[string]string) error) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if check != nil {
			rows, err := tx.QueryContext(ctx, `SELECT name, value FROM env WHERE project = ?`, project)
			if err != nil {
				return fmt.Errorf("read env of %s: %w", project, err)
			}
			vars, err := collect(rows, func(r scanner) ([2]string, error) {
				var kv [2]string
				err := r.Scan(&kv[0], &kv[1])
				return kv, err
			})
			if err != nil {
				return fmt.Errorf("read env of %s: %w", project, err)
			}
			all := make(map[string]string, len(vars)+1)
			for _, kv := range vars {
				all[kv[0]] = kv[1]
			}
			all[name] = value
			if err := check(all); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO env (project, name, value, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (project, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
			project, name, value, toNano(s.now())); err != nil {
			return fmt.Errorf("set env %s of %s: %w", name, project, err)
		}
		return nil
	})
}

// Env returns the environment variables of project, ordered by name. A
// project without any, or that does not exist, has none.
func (s *Store) Env(ctx context.Context, project string) ([]EnvVar, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT name, value, updated_at FROM env WHERE project = ? ORDER BY name`, project)
	if err != nil {
		return nil, fmt.Errorf("read env of %s: %w", project, err)
	}
	return collect(rows, func(r scanner) (EnvVar, error) {
		var v EnvVar
		var updated int64
		err := r.Scan(&v.Name, &v.Value, &updated)
		v.UpdatedAt = fromNano(updated)
		return v, err
	})
}

// DeleteEnv deletes the environment variable name of project, or returns
// ErrNotFound.
func (s *Store) DeleteEnv(ctx context.Context, project, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM env WHERE project = ? AND name = ?`, project, name)
	if err != nil {
		return fmt.Errorf("delete env %s of %s: %w", name, project, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete env %s of %s: %w", name, project, err)
	}
	if n == 0 {
		return fmt.Errorf("env %s of %s: %w", name, project, ErrNotFound)
	}
	return nil
}
