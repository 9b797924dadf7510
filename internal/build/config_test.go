package build

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/model"
)

var parseConfigTests = []struct {
	name     string
	in       string
	want     model.FunctionConfig // when wantLine and wantMsg are zero
	wantLine int
	wantMsg  string // substring of Error.Msg
}{
	{name: "empty_object", in: `{}`, want: model.DefaultFunctionConfig()},
	{name: "concurrency_true", in: `{"concurrency": true}`, want: withConfig(func(c *model.FunctionConfig) { c.MaxConcurrency = 100 })},
	{name: "concurrency_false", in: `{"concurrency": false}`, want: withConfig(func(c *model.FunctionConfig) { c.MaxConcurrency = 1 })},
	{name: "concurrency_max", in: `{"concurrency": {"max": 8}}`, want: withConfig(func(c *model.FunctionConfig) { c.MaxConcurrency = 8 })},
	{name: "concurrency_empty_object", in: `{"concurrency": {}}`, want: model.DefaultFunctionConfig()},
	{name: "max_duration_fraction", in: `{"maxDuration": 2.5}`, want: withConfig(func(c *model.FunctionConfig) { c.MaxDuration = 2500 * time.Millisecond })},
	{name: "max_duration_max", in: `{"maxDuration": 900}`, want: withConfig(func(c *model.FunctionConfig) { c.MaxDuration = 900 * time.Second })},
	{name: "memory", in: `{"memory": 512}`, want: withConfig(func(c *model.FunctionConfig) { c.MemoryMB = 512 })},
	{name: "min_instances", in: `{"minInstances": 2}`, want: withConfig(func(c *model.FunctionConfig) { c.MinInstances = 2 })},
	{name: "loops", in: `{"loops": 1}`, want: withConfig(func(c *model.FunctionConfig) { c.Loops = 1 })},
	{name: "helpers_false", in: `{"helpers": false}`, want: withConfig(func(c *model.FunctionConfig) { c.NoHelpers = true })},
	{name: "helpers_true", in: `{"helpers": true}`, want: model.DefaultFunctionConfig()},
	{name: "helpers_not_bool", in: "{\n  \"helpers\": \"no\"\n}", wantLine: 2, wantMsg: `helpers: must be true or false, got "no"`},
	{
		name: "all",
		in:   "{\n  \"concurrency\": { \"max\": 1000 },\n  \"maxDuration\": 0.25,\n  \"memory\": 10240,\n  \"minInstances\": 100\n}\n",
		want: model.FunctionConfig{MaxConcurrency: 1000, MaxDuration: 250 * time.Millisecond, MemoryMB: 10240, MinInstances: 100},
	},

	{name: "syntax_error", in: "{\n  \"memory\": 512\n  \"minInstances\": 1\n}\n", wantLine: 3, wantMsg: "invalid character"},
	{name: "trailing_comma", in: "{\n  \"memory\": 512,\n}\n", wantLine: 3, wantMsg: "invalid character '}'"},
	{name: "unterminated", in: "{\n  \"memory\": 512,\n", wantLine: 2, wantMsg: "unexpected end"},
	{name: "empty_file", in: "", wantLine: 1, wantMsg: "unexpected end"},
	{name: "not_an_object", in: "\n[1]", wantLine: 2, wantMsg: "must be a JSON object, got an array"},
	{name: "trailing_data", in: "{}\n{}", wantLine: 2, wantMsg: "invalid character '{' after top-level value"},
	{name: "trailing_garbage", in: "{}\nx", wantLine: 2, wantMsg: "invalid character 'x'"},
	{name: "unknown_key", in: "{\n  \"memory\": 512,\n\n  \"concurency\": true\n}\n", wantLine: 4, wantMsg: `unknown key "concurency"`},
	{name: "duplicate_key", in: "{\"memory\": 512,\n\"memory\": 256}", wantLine: 2, wantMsg: `duplicate key "memory"`},
	{name: "concurrency_string", in: "{\n\"concurrency\": \"yes\"}", wantLine: 2, wantMsg: `concurrency: must be true, false or { "max": N }, got "yes"`},
	{name: "concurrency_number", in: `{"concurrency": 8}`, wantLine: 1, wantMsg: "got 8"},
	{name: "concurrency_max_zero", in: "{\"concurrency\": {\n  \"max\": 0\n}}", wantLine: 2, wantMsg: "concurrency max: must be an integer from 1 to 1000, got 0"},
	{name: "concurrency_max_too_big", in: `{"concurrency": {"max": 1001}}`, wantLine: 1, wantMsg: "got 1001"},
	{name: "concurrency_max_fraction", in: `{"concurrency": {"max": 2.5}}`, wantLine: 1, wantMsg: "got 2.5"},
	{name: "concurrency_max_string", in: `{"concurrency": {"max": "8"}}`, wantLine: 1, wantMsg: `got "8"`},
	{name: "concurrency_unknown_key", in: "{\"concurrency\": {\n\"min\": 2}}", wantLine: 2, wantMsg: `unknown key "min" in concurrency`},
	{name: "max_duration_zero", in: `{"maxDuration": 0}`, wantLine: 1, wantMsg: "maxDuration: must be more than 0 and at most 900 seconds, got 0"},
	{name: "max_duration_negative", in: `{"maxDuration": -1}`, wantLine: 1, wantMsg: "got -1"},
	{name: "max_duration_too_big", in: `{"maxDuration": 900.5}`, wantLine: 1, wantMsg: "got 900.5"},
	{name: "max_duration_below_1ns", in: `{"maxDuration": 1e-10}`, wantLine: 1, wantMsg: "got 1e-10"},
	{name: "max_duration_huge", in: `{"maxDuration": 1e400}`, wantLine: 1, wantMsg: "got 1e400"},
	{name: "max_duration_string", in: `{"maxDuration": "60s"}`, wantLine: 1, wantMsg: `maxDuration: must be a number of seconds, got "60s"`},
	{name: "memory_too_small", in: "{\n\n\"memory\": 127}", wantLine: 3, wantMsg: "memory: must be an integer from 128 to 10240, got 127"},
	{name: "memory_too_big", in: `{"memory": 10241}`, wantLine: 1, wantMsg: "got 10241"},
	{name: "memory_fraction", in: `{"memory": 256.5}`, wantLine: 1, wantMsg: "got 256.5"},
	{name: "memory_huge", in: `{"memory": 99999999999999999999}`, wantLine: 1, wantMsg: "got 99999999999999999999"},
	{name: "memory_null", in: `{"memory": null}`, wantLine: 1, wantMsg: "got null"},
	{name: "memory_object", in: `{"memory": {"mb": 1}}`, wantLine: 1, wantMsg: "got an object"},
	{name: "min_instances_negative", in: `{"minInstances": -1}`, wantLine: 1, wantMsg: "minInstances: must be an integer from 0 to 100, got -1"},
	{name: "min_instances_too_big", in: `{"minInstances": 101}`, wantLine: 1, wantMsg: "got 101"},
	{name: "min_instances_bool", in: `{"minInstances": true}`, wantLine: 1, wantMsg: "got true"},
	{name: "loops_zero", in: `{"loops": 0}`, wantLine: 1, wantMsg: "loops: must be an integer from 1 to 16, got 0"},
	{name: "loops_too_many", in: `{"loops": 17}`, wantLine: 1, wantMsg: "got 17"},
}

// withConfig returns the default config changed by f.
func withConfig(f func(*model.FunctionConfig)) model.FunctionConfig {
	c := model.DefaultFunctionConfig()
	f(&c)
	return c
}

func TestParseConfig(t *testing.T) {
	for _, tt := range parseConfigTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig([]byte(tt.in))
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("parseConfig: %v", err)
				}
				if got != tt.want {
					t.Errorf("parseConfig = %+v, want %+v", got, tt.want)
				}
				return
			}
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("parseConfig error = %v (config %+v), want an *Error", err, got)
			}
			if e.File != "shoal.json" || e.Line != tt.wantLine || !strings.Contains(e.Msg, tt.wantMsg) {
				t.Errorf("parseConfig error = %#v, want line %d and message containing %q", *e, tt.wantLine, tt.wantMsg)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, tt := range parseConfigTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data)
		if err != nil {
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("error %v is not an *Error", err)
			}
			if lines := 1 + bytes.Count(data, []byte("\n")); e.File != "shoal.json" || e.Line < 0 || e.Line > lines {
				t.Fatalf("error %#v: want File shoal.json and Line in [0, %d]", *e, lines)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parseConfig(%q) = %+v, which is invalid: %v", data, cfg, err)
		}
		if !json.Valid(data) {
			t.Fatalf("parseConfig(%q) accepted invalid JSON", data)
		}
	})
}
