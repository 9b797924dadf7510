package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-dev/shoal/internal/adminapi"
	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/model"
	"github.com/shoal-dev/shoal/internal/store"
)

// SetEnv sets one environment variable of project, checking that it and
// the project's other variables stay within model.MaxEnvBytes. The project
// need not exist yet. Running deployments keep the variables they were
// made with: the change applies from the next deploy.
func (c *control) SetEnv(ctx context.Context, project, name, value string) error {
	if err := validateEnvKey(project, name); err != nil {
		return err
	}
	if err := model.ValidateEnvValue(value); err != nil {
		return fmt.Errorf("%w: %s: %v", adminapi.ErrBadRequest, name, err)
	}
	return c.store.SetEnv(ctx, project, name, value, func(all map[string]string) error {
		if err := model.ValidateEnvTotal(all); err != nil {
			return fmt.Errorf("%w: set %s on %s: %v", adminapi.ErrBadRequest, name, project, err)
		}
		return nil
	})
}

// Env lists the environment variables of project, without their values.
func (c *control) Env(ctx context.Context, project string) ([]api.EnvVar, error) {
	if err := model.ValidateProjectName(project); err != nil {
		return nil, fmt.Errorf("%w: %v", adminapi.ErrBadRequest, err)
	}
	vs, err := c.store.Env(ctx, project)
	if err != nil {
		return nil, err
	}
	out := make([]api.EnvVar, len(vs))
	for i, v := range vs {
		out[i] = api.EnvVar{Name: v.Name, UpdatedAt: v.UpdatedAt}
	}
	return out, nil
}

// RemoveEnv deletes one environment variable of project. Running
// deployments keep it: the removal applies from the next deploy.
func (c *control) RemoveEnv(ctx context.Context, project, name string) error {
	if err := validateEnvKey(project, name); err != nil {
		return err
	}
	if err := c.store.DeleteEnv(ctx, project, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("environment variable %s of project %q: %w", name, project, adminapi.ErrNotFound)
		}
		return err
	}
	return nil
}

// deployEnv returns the environment variables of project as "NAME=VALUE"
// strings sorted by name, for a deployment to snapshot; nil when it has
// none.
func (c *control) deployEnv(ctx context.Context, project string) ([]string, error) {
	vs, err := c.store.Env(ctx, project)
	if err != nil {
		return nil, fmt.Errorf("env of %s: %w", project, err)
	}
	var out []string
	for _, v := range vs {
		out = append(out, v.Name+"="+v.Value)
	}
	return out, nil
}

// validateEnvKey checks the project and variable names of an env request.
func validateEnvKey(project, name string) error {
	if err := model.ValidateProjectName(project); err != nil {
		return fmt.Errorf("%w: %v", adminapi.ErrBadRequest, err)
	}
	if err := model.ValidateEnvName(name); err != nil {
		return fmt.Errorf("%w: %v", adminapi.ErrBadRequest, err)
	}
	return nil
}
