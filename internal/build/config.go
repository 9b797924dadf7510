package build

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shoal-dev/shoal/internal/model"
)

// configFile is the name of the optional per-project configuration file.
const configFile = "shoal.json"

// parseConfig parses the contents of shoal.json. It starts from
// model.DefaultFunctionConfig and returns a *Error naming the line of the
// first thing wrong.
//
// The file is read token by token, rather than decoded into a struct, so that
// every error can say on which line it is.
func parseConfig(data []byte) (model.FunctionConfig, error) {
	patch, err := parsePatch(data)
	if err != nil {
		return model.FunctionConfig{}, err
	}
	cfg := model.DefaultFunctionConfig().With(patch)
	if err := cfg.Validate(); err != nil {
		return model.FunctionConfig{}, &Error{File: configFile, Msg: err.Error()}
	}
	return cfg, nil
}

// parsePatch parses the contents of shoal.json into what it sets.
func parsePatch(data []byte) (model.ConfigPatch, error) {
	// Unmarshal checks the syntax of the whole input, and reports the offset
	// of a syntax error from its start; the Decoder's offsets are relative to
	// the value it is reading.
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		serr, ok := errors.AsType[*json.SyntaxError](err)
		if !ok {
			return model.ConfigPatch{}, &Error{File: configFile, Msg: err.Error()}
		}
		// serr.Offset counts the offending byte.
		return model.ConfigPatch{}, &Error{File: configFile, Line: lineAt(data, serr.Offset-1), Msg: serr.Error()}
	}
	p := &configParser{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	var patch model.ConfigPatch
	if err := p.parse(&patch); err != nil {
		return model.ConfigPatch{}, err
	}
	return patch, nil
}

// configParser walks the tokens of a syntactically valid shoal.json.
type configParser struct {
	data []byte        // the whole file, to turn offsets into lines
	dec  *json.Decoder // reads data
}

// lineAt returns the 1-based line of byte offset off in data.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

// errorf returns an *Error on the line of the last token read.
func (p *configParser) errorf(format string, args ...any) *Error {
	return &Error{File: configFile, Line: lineAt(p.data, p.dec.InputOffset()), Msg: fmt.Sprintf(format, args...)}
}

// token reads the next token. The input is valid JSON, checked by
// parseConfig, so errors are unexpected.
func (p *configParser) token() (json.Token, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.errorf("%v", err)
	}
	return tok, nil
}

func (p *configParser) parse(cfg *model.ConfigPatch) error {
	tok, err := p.token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return p.errorf("must be a JSON object, got %s", describe(tok))
	}
	seen := make(map[string]bool)
	for p.dec.More() {
		tok, err := p.token()
		if err != nil {
			return err
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return p.errorf("duplicate key %q", key)
		}
		seen[key] = true
		switch key {
		case "concurrency":
			var n int
			n, err = p.concurrency()
			cfg.MaxConcurrency = &n
		case "maxDuration":
			var d time.Duration
			d, err = p.maxDuration()
			cfg.MaxDuration = &d
		case "memory":
			var n int
			n, err = p.integer(key, model.MinMemoryMB, model.MaxMemoryMB)
			cfg.MemoryMB = &n
		case "minInstances":
			var n int
			n, err = p.integer(key, 0, model.MaxMinInstances)
			cfg.MinInstances = &n
		case "loops":
			var n int
			n, err = p.integer(key, 1, model.MaxLoops)
			cfg.Loops = &n
		case "helpers":
			var on bool
			on, err = p.boolean(key)
			off := !on
			cfg.NoHelpers = &off
		default:
			err = p.errorf("unknown key %q", key)
		}
		if err != nil {
			return err
		}
	}
	_, err = p.token() // the closing '}'
	return err
}

// concurrency reads `true`, `false` or `{ "max": N }` and returns the
// most invocations an instance serves at once.
func (p *configParser) concurrency() (int, error) {
	tok, err := p.token()
	if err != nil {
		return 0, err
	}
	switch tok {
	case true:
		return model.DefaultMaxConcurrency, nil
	case false:
		return 1, nil
	case json.Delim('{'):
	default:
		return 0, p.errorf(`concurrency: must be true, false or { "max": N }, got %s`, describe(tok))
	}
	n := model.DefaultMaxConcurrency
	for p.dec.More() {
		tok, err := p.token()
		if err != nil {
			return 0, err
		}
		if key := tok.(string); key != "max" {
			return 0, p.errorf("unknown key %q in concurrency", key)
		}
		if n, err = p.integer("concurrency max", 1, model.MaxMaxConcurrency); err != nil {
			return 0, err
		}
	}
	_, err = p.token() // the closing '}'
	return n, err
}

// maxDuration reads a number of seconds, which may be fractional.
func (p *configParser) maxDuration() (time.Duration, error) {
	tok, err := p.token()
	if err != nil {
		return 0, err
	}
	n, ok := tok.(json.Number)
	if !ok {
		return 0, p.errorf("maxDuration: must be a number of seconds, got %s", describe(tok))
	}
	d, err := seconds(n)
	if err != nil {
		return 0, p.errorf("%v", err)
	}
	return d, nil
}

// seconds converts a maxDuration in seconds, checking its bounds.
func seconds(n json.Number) (time.Duration, error) {
	maxSec := model.MaxMaxDuration.Seconds()
	sec, err := n.Float64()
	d := time.Duration(math.Round(sec * float64(time.Second)))
	if err != nil || sec > maxSec || d <= 0 {
		return 0, fmt.Errorf("maxDuration: must be more than 0 and at most %g seconds, got %s", maxSec, n)
	}
	return d, nil
}

// boolean reads true or false.
func (p *configParser) boolean(name string) (bool, error) {
	tok, err := p.token()
	if err != nil {
		return false, err
	}
	b, ok := tok.(bool)
	if !ok {
		return false, p.errorf("%s: must be true or false, got %s", name, describe(tok))
	}
	return b, nil
}

// integer reads a whole number between lo and hi inclusive.
func (p *configParser) integer(name string, lo, hi int) (int, error) {
	tok, err := p.token()
	if err != nil {
		return 0, err
	}
	n, ok := tok.(json.Number)
	if !ok {
		return 0, p.errorf("%s: must be an integer from %d to %d, got %s", name, lo, hi, describe(tok))
	}
	i, err := n.Int64()
	if err != nil || i < int64(lo) || i > int64(hi) {
		return 0, p.errorf("%s: must be an integer from %d to %d, got %s", name, lo, hi, n)
	}
	return int(i), nil
}

// describe names a JSON token in an error message.
func describe(tok json.Token) string {
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return fmt.Sprintf("%q", tok)
	case nil:
		return "null"
	default:
		return fmt.Sprint(tok)
	}
}
