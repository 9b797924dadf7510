package model

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
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
	// MaxLoops bounds FunctionConfig.Loops; memoryPerLoopMB and
	// defaultMaxLoops make its default.
	MaxLoops        = 16
	memoryPerLoopMB = 256
	defaultMaxLoops = 8
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
	// Loops is the most event loops one instance runs (worker threads
	// started when invocations queue for one loop); 0 means the default,
	// see MaxLoops.
	Loops int `json:"loops,omitempty"`
}

// MaxLoops is the most event loops one instance of the function runs: Loops
// if set, else one per 256 MB of memory, 1 to 8; always 1 for a function
// that serves one invocation at a time.
func (c FunctionConfig) MaxLoops() int {
	switch {
	case c.MaxConcurrency <= 1:
		return 1
	case c.Loops > 0:
		return c.Loops
	}
	return min(max(c.MemoryMB/memoryPerLoopMB, 1), defaultMaxLoops)
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

// ConfigPatch is what one source of configuration (shoal.json, vercel.json,
// a function's `export const config`) sets; nil fields leave the setting as
// it was.
type ConfigPatch struct {
	MaxConcurrency *int
	MaxDuration    *time.Duration
	MemoryMB       *int
	MinInstances   *int
	NoHelpers      *bool
	Loops          *int
}

// With returns c with what p sets applied.
func (c FunctionConfig) With(p ConfigPatch) FunctionConfig {
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.MaxConcurrency, p.MaxConcurrency)
	set(&c.MemoryMB, p.MemoryMB)
	set(&c.MinInstances, p.MinInstances)
	set(&c.Loops, p.Loops)
	if p.MaxDuration != nil {
		c.MaxDuration = *p.MaxDuration
	}
	if p.NoHelpers != nil {
		c.NoHelpers = *p.NoHelpers
	}
	return c
}

// Function is one function of a deployment: a bundle and how it runs. A
// project with an api/ folder has one per file in it; another project has
// one, its entry.
type Function struct {
	// File is the source file the function was built from, relative to the
	// project folder and slash-separated: "api/users/[id].ts", "index.js".
	File string `json:"file"`
	// Bundle is the bundle's path relative to the deployment folder,
	// slash-separated.
	Bundle string         `json:"bundle"`
	Config FunctionConfig `json:"config"`
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
	case c.Loops < 0 || c.Loops > MaxLoops:
		return fmt.Errorf("loops %d: must be between 1 and %d", c.Loops, MaxLoops)
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

// MaxEnvBytes bounds the environment variables of a project: the lengths
// of all their names and values added up (Vercel's limit).
const MaxEnvBytes = 64 << 10

// maxEnvNameBytes bounds the name of one environment variable.
const maxEnvNameBytes = 256

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnvNames are the variables the sandbox sets for every function
// (see sandbox.FunctionEnv), and those of the Go runtime, which the
// instance's supervisor (a Go process) would obey too. NODE_ENV and TZ are
// set too but users may override them, as on Vercel.
var reservedEnvNames = map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true, "LANG": true,
	"GOMAXPROCS": true, "GOGC": true, "GOMEMLIMIT": true, "GODEBUG": true, "GOTRACEBACK": true}

// ValidateEnvName reports whether name can name an environment variable a
// user sets: letters, digits and _, not starting with a digit, at most 256
// bytes, and none of the names the platform sets or obeys itself: PATH,
// HOME, TMPDIR, LANG, the Go runtime's GOMAXPROCS, GOGC, GOMEMLIMIT,
// GODEBUG and GOTRACEBACK, and any starting with SHOAL_ whatever its case.
func ValidateEnvName(name string) error {
	switch {
	case name == "":
		return errors.New("env name is empty")
	case len(name) > maxEnvNameBytes:
		return fmt.Errorf("env name %.16q...: longer than %d bytes", name, maxEnvNameBytes)
	case !envNameRE.MatchString(name):
		return fmt.Errorf("env name %q: use letters, digits and _, not starting with a digit", name)
	case len(name) >= len("SHOAL_") && strings.EqualFold(name[:len("SHOAL_")], "SHOAL_"):
		return fmt.Errorf("env name %q: names starting with SHOAL_ are reserved for the platform", name)
	case reservedEnvNames[name]:
		return fmt.Errorf("env name %q: reserved, the platform sets it", name)
	}
	return nil
}

// ValidateEnvValue reports whether value can be the value of an environment
// variable: UTF-8 text (the API carries it in JSON) without a NUL byte
// (no process environment can hold one).
func ValidateEnvValue(value string) error {
	if i := strings.IndexByte(value, 0); i >= 0 {
		return fmt.Errorf("env value: holds a NUL byte at offset %d", i)
	}
	if !utf8.ValidString(value) {
		return errors.New("env value: not UTF-8 text")
	}
	return nil
}

// ValidateEnvTotal reports whether a project's environment variables, name
// to value, stay within MaxEnvBytes all together.
func ValidateEnvTotal(vars map[string]string) error {
	total := 0
	for name, value := range vars {
		total += len(name) + len(value)
	}
	if total > MaxEnvBytes {
		return fmt.Errorf("env variables total %d bytes of names and values: at most %d (%d KiB) per project", total, MaxEnvBytes, MaxEnvBytes>>10)
	}
	return nil
}
