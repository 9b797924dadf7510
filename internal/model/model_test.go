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
