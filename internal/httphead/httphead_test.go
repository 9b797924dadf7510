package httphead

import (
	"bufio"
	"net/textproto"
	"strings"
	"testing"
)

// Line reads a header line as textproto does, or declines it.
func TestLine(t *testing.T) {
	for _, tc := range []struct {
		kv, key, value string
		ok             bool
	}{
		{"content-type: text/plain", "Content-Type", "text/plain", true},
		{"X-SHOAL-ENTRY-MS:0.1", "X-Shoal-Entry-Ms", "0.1", true},
		{"a-name-longer-than-thirty-two-bytes-x:  \t v w \t ", "A-Name-Longer-Than-Thirty-Two-Bytes-X", "v w", true},
		{"X-Empty:", "X-Empty", "", true},
		{"X-Utf8: \xe2\x9c\x93", "X-Utf8", "\xe2\x9c\x93", true},
		{"X-Colon: a:b", "X-Colon", "a:b", true},
		{"no colon", "", "", false},
		{": no name", "", "", false},
		{"A : space before the colon", "", "", false},
		{"A: b\x01c", "", "", false},
		{"A: b\rc", "", "", false},
		{"A: b\x7f", "", "", false},
		{"\xe2: non-token name", "", "", false},
	} {
		key, from, to, ok := Line([]byte(tc.kv))
		if ok != tc.ok || ok && (key != tc.key || tc.kv[from:to] != tc.value) {
			t.Errorf("Line(%q) = %q, %q, %v; want %q, %q, %v", tc.kv, key, tc.kv[from:to], ok, tc.key, tc.value, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		// What textproto makes of the same line.
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(tc.kv + "\r\n\r\n"))).ReadMIMEHeader()
		if err != nil || len(h) != 1 || len(h[key]) != 1 || h[key][0] != tc.value {
			t.Errorf("textproto reads %q as %v, %v", tc.kv, h, err)
		}
	}
}

func TestEqualFold(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{{"keep-alive", true}, {"Keep-Alive", true}, {"KEEP-ALIVE", true}, {"keep-alivf", false}, {"keep", false}, {"", false}} {
		if got := EqualFold(tc.s, "keep-alive"); got != tc.want {
			t.Errorf("EqualFold(%q, keep-alive) = %v", tc.s, got)
		}
	}
}
