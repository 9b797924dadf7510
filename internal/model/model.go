package model

import (
	"fmt"
	"regexp"
	"time"
)

// Defaults and bounds for FunctionConfig.
const (
	DefaultMaxConcurrency = 100
	MaxMaxConcurrency     = 1000
	DefaultMaxDuration    = 60 * time.Second
	MaxMaxDuration        = 900 * time.Second
	DefaultMemoryMB       = 1024
	MinMemoryMB           = 128
	MaxMemoryMB           = 10240
	MaxMinInstances       = 100
)

// FunctionConfig is what a project's shoal.json says about how its function
// runs. The zero value is not valid; start from DefaultFunctionConfig.
type FunctionConfig struct {
	// MaxConcurrency is the most invocations one instance serves at once.
	// 1 is the classic one-invocation-per-instance model.
	MaxConcurrency int `json:"maxConcurrency"`
	// MaxDuration bounds each invocation, from its start to its last byte.
	MaxDuration time.Duration `json:"maxDuration"`
	// MemoryMB is the memory size of one instance, in MiB.
	MemoryMB int `json:"memoryMB"`
	// MinInstances is how many instances stay started while the deployment
	// is its project's current one; 0 lets the project scale to zero.
	MinInstances int `json:"minInstances"`
	// NoHelpers serves Node style handlers without the request and
	// response helpers (req.query, req.body, res.json()...): bodies stream
	// to the handler unbuffered. shoal.json says `"helpers": false`.
	NoHelpers bool `json:"noHelpers,omitempty"`
}

// DefaultFunctionConfig returns the configuration of a project without a
// shoal.json.
func DefaultFunctionConfig() FunctionConfig {
	return FunctionConfig{
		MaxConcurrency: DefaultMaxConcurrency,
		MaxDuration:    DefaultMaxDuration,
		MemoryMB:       DefaultMemoryMB,
	}
}

// Validate reports the first field out of its bounds.
func (c FunctionConfig) Validate() error {
	switch {
	case c.MaxConcurrency < 1 || c.MaxConcurrency > MaxMaxConcurrency:
		return fmt.Errorf("concurrency max %d: must be between 1 and %d", c.MaxConcurrency, MaxMaxConcurrency)
	case c.MaxDuration <= 0 || c.MaxDuration > MaxMaxDuration:
		return fmt.Errorf("maxDuration %s: must be more than 0 and at most %s", c.MaxDuration, MaxMaxDuration)
	case c.MemoryMB < MinMemoryMB || c.MemoryMB > MaxMemoryMB:
		return fmt.Errorf("memory %d MB: must be between %d and %d", c.MemoryMB, MinMemoryMB, MaxMemoryMB)
	case c.MinInstances < 0 || c.MinInstances > MaxMinInstances:
		return fmt.Errorf("minInstances %d: must be between 0 and %d", c.MinInstances, MaxMinInstances)
	}
	return nil
}

var projectNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateProjectName reports whether name can name a project: 1 to 63
// lower-case letters, digits and inner hyphens, so that it is both a URL path
// segment and a DNS label (NAME.localhost).
func ValidateProjectName(name string) error {
	if !projectNameRE.MatchString(name) {
		return fmt.Errorf("project name %q: use 1 to 63 lower-case letters, digits and inner hyphens", name)
	}
	return nil
}
