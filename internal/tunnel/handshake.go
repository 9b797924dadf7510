package tunnel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

const (
	helloPrefix = "SHOAL-TUNNEL/1 "
	maxHelloLen = 256
	maxIDLen    = 64
	maxTokenLen = 128
	okLine      = "OK\n"
	// readyLine is what a runtime on a socket pair writes once it serves.
	readyLine = "READY\n"
)

// ErrBadHello is returned for a handshake line that does not follow
// PROTOCOL.md.
var ErrBadHello = errors.New("tunnel: malformed handshake")

// formatHello returns the handshake line an instance sends.
func formatHello(id, token string) ([]byte, error) {
	if !validWord(id, maxIDLen) || !validWord(token, maxTokenLen) {
		return nil, fmt.Errorf("format hello for %q: %w", id, ErrBadHello)
	}
	return []byte(helloPrefix + id + " " + token + "\n"), nil
}

// readHello reads one handshake line from r, never more than maxHelloLen
// bytes, and returns its instance id and token.
func readHello(r io.Reader) (id, token string, err error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxHelloLen), maxHelloLen)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrBadHello, err)
	}
	return parseHello(line)
}

// parseHello parses one handshake line, newline included.
func parseHello(line []byte) (id, token string, err error) {
	rest, ok := bytes.CutPrefix(line, []byte(helloPrefix))
	if !ok {
		return "", "", ErrBadHello
	}
	rest, ok = bytes.CutSuffix(rest, []byte("\n"))
	if !ok {
		return "", "", ErrBadHello
	}
	idB, tokB, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return "", "", ErrBadHello
	}
	id, token = string(idB), string(tokB)
	if !validWord(id, maxIDLen) || !validWord(token, maxTokenLen) {
		return "", "", ErrBadHello
	}
	return id, token, nil
}

func validWord(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
