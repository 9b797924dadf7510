package model

import (
	"strings"
	"testing"
	"time"
)

func TestFunctionConfig_Validate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*FunctionConfig)
		ok     bool
	}{
		{"default", func(*FunctionConfig) {}, true},
		{"classic", func(c *FunctionConfig) { c.MaxConcurrency = 1 }, true},
		{"zero_concurrency", func(c *FunctionConfig) { c.MaxConcurrency = 0 }, false},
		{"too_much_concurrency", func(c *FunctionConfig) { c.MaxConcurrency = MaxMaxConcurrency + 1 }, false},
		{"zero_duration", func(c *FunctionConfig) { c.MaxDuration = 0 }, false},
		{"longest_duration", func(c *FunctionConfig) { c.MaxDuration = MaxMaxDuration }, true},
		{"too_long", func(c *FunctionConfig) { c.MaxDuration = MaxMaxDuration + time.Second }, false},
		{"small_memory", func(c *FunctionConfig) { c.MemoryMB = MinMemoryMB - 1 }, false},
		{"negative_min", func(c *FunctionConfig) { c.MinInstances = -1 }, false},
		{"too_many_min", func(c *FunctionConfig) { c.MinInstances = MaxMinInstances + 1 }, false},
		{"most_loops", func(c *FunctionConfig) { c.Loops = MaxLoops }, true},
		{"too_many_loops", func(c *FunctionConfig) { c.Loops = MaxLoops + 1 }, false},
		{"negative_loops", func(c *FunctionConfig) { c.Loops = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultFunctionConfig()
			tt.change(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate(%+v) = %v, want ok=%v", c, err, tt.ok)
			}
		})
	}
}

func TestFunctionConfig_MaxLoops(t *testing.T) {
	tests := []struct {
		memoryMB, maxConcurrency, loops, want int
	}{
		{128, 100, 0, 1},
		{512, 100, 0, 2},
		{1024, 100, 0, 4},
		{10240, 100, 0, 8},
		{1024, 100, 1, 1},
		{128, 100, 12, 12},
		{1024, 1, 6, 1}, // one invocation per instance needs one loop
	}
	for _, tt := range tests {
		c := FunctionConfig{MemoryMB: tt.memoryMB, MaxConcurrency: tt.maxConcurrency, Loops: tt.loops}
		if got := c.MaxLoops(); got != tt.want {
			t.Errorf("%+v: MaxLoops() = %d, want %d", c, got, tt.want)
		}
	}
}

func TestValidateProjectName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"hello", true}, {"a", true}, {"my-app-2", true}, {strings.Repeat("a", 63), true},
		{"", false}, {"-a", false}, {"a-", false}, {"Hello", false}, {"a_b", false},
		{"_shoal", false}, {"a.b", false}, {strings.Repeat("a", 64), false},
	}
	for _, tt := range tests {
		if err := ValidateProjectName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidateProjectName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestValidateEnvName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // part of the message, or "" for valid
	}{
		{"upper", "DB_URL", ""},
		{"lower", "db_url", ""},
		{"one_letter", "A", ""},
		{"underscore", "_", ""},
		{"leading_underscore", "_PRIVATE", ""},
		{"digits_after", "A1_2", ""},
		{"node_env", "NODE_ENV", ""},
		{"tz", "TZ", ""},
		{"longest", strings.Repeat("A", 256), ""},
		{"path_lower_case", "path", ""},
		{"shoal_inside", "MY_SHOAL_X", ""},
		{"shoal_without_underscore", "SHOALX", ""},
		{"empty", "", "empty"},
		{"too_long", strings.Repeat("A", 257), "longer than 256 bytes"},
		{"leading_digit", "1X", `env name "1X": use letters, digits and _, not starting with a digit`},
		{"dash", "DB-URL", "use letters"},
		{"dot", "a.b", "use letters"},
		{"space", "A B", "use letters"},
		{"equals", "A=B", "use letters"},
		{"non_ascii", "É", "use letters"},
		{"nul", "A\x00", "use letters"},
		{"newline", "A\n", "use letters"},
		{"shoal_prefix", "SHOAL_TOKEN", "reserved"},
		{"shoal_prefix_lower", "shoal_x", "reserved"},
		{"shoal_prefix_mixed", "Shoal_Tunnel_Token", "reserved"},
		{"shoal_underscore_alone", "SHOAL_", "reserved"},
		{"path", "PATH", "reserved"},
		{"home", "HOME", "reserved"},
		{"tmpdir", "TMPDIR", "reserved"},
		{"lang", "LANG", "reserved"},
		{"go_runtime", "GOMAXPROCS", "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateEnvName(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("ValidateEnvName(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ValidateEnvName(%q) = %v, want an error saying %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestValidateEnvValue(t *testing.T) {
	tests := []struct {
		name  string
		value string
		ok    bool
	}{
		{"empty", "", true},
		{"text", "postgres://u:p@db/x?sslmode=require", true},
		{"newlines_and_unicode", "-----BEGIN-----\r\nélan\t=\n", true},
		{"nul", "a\x00b", false},
		{"not_utf8", "a\xffb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateEnvValue(tt.value); (err == nil) != tt.ok {
				t.Errorf("ValidateEnvValue(%q) = %v, want ok=%v", tt.value, err, tt.ok)
			}
		})
	}
}

func TestValidateEnvTotal(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		ok   bool
	}{
		{"none", nil, true},
		{"small", map[string]string{"A": "1", "B": "2"}, true},
		{"exactly_the_limit", map[string]string{"A": strings.Repeat("x", MaxEnvBytes-1)}, true},
		{"one_value_over", map[string]string{"A": strings.Repeat("x", MaxEnvBytes)}, false},
		{"names_count", map[string]string{"AB": strings.Repeat("x", MaxEnvBytes-2), "C": ""}, false},
		{"sum_over", map[string]string{"A": strings.Repeat("x", MaxEnvBytes/2), "B": strings.Repeat("x", MaxEnvBytes/2)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateEnvTotal(tt.vars)
			if (err == nil) != tt.ok {
				t.Errorf("ValidateEnvTotal = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "64 KiB") {
				t.Errorf("ValidateEnvTotal = %v, want it to name the limit", err)
			}
		})
	}
}
