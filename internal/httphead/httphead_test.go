package httphead

import (
	"bufio"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// line reads a header line as textproto does, or declines it.
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
		kv := []byte(tc.kv)
		colon, from, to, canonical, ok := line(kv)
		if ok != tc.ok {
			t.Errorf("line(%q) read it: %v, want %v", tc.kv, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		key := canonicalKey(kv[:colon])
		if key != tc.key || tc.kv[from:to] != tc.value || canonical != (tc.kv[:colon] == tc.key) {
			t.Errorf("line(%q): name %q (canonical %v) as %q, value %q; want %q, %q", tc.kv, tc.kv[:colon], canonical, key, tc.kv[from:to], tc.key, tc.value)
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

// A Header reads head after head: each map holds its own head's lines and
// nothing of the one before, and reading a head it has room for allocates
// nothing.
func TestHeader_Read(t *testing.T) {
	all := func(string, string) bool { return true }
	var hd Header
	for _, tc := range []struct {
		head string
		want http.Header
	}{
		{"A: 1\r\nB: 2\r\nb: 3\r\nC: 4\r\n", http.Header{"A": {"1"}, "B": {"2", "3"}, "C": {"4"}}},
		{"D: 5\r\n", http.Header{"D": {"5"}}},
		{"", http.Header{}},
		{"a: 6\r\nE: 7\r\n", http.Header{"A": {"6"}, "E": {"7"}}},
	} {
		h, ok := hd.Read([]byte(tc.head), tc.head, 0, all)
		if !ok || !reflect.DeepEqual(h, tc.want) {
			t.Errorf("Read(%q) = %v, %v; want %v", tc.head, h, ok, tc.want)
		}
		for i, v := range hd.values[strings.Count(tc.head, "\r\n"):] {
			if v != "" {
				t.Errorf("after %q: value %d of a head before, %q, still held", tc.head, i, v)
			}
		}
	}
	// Names in canonical form are their own keys, even those not in
	// commonKeys: no allocation for them either.
	head := "A: 1\r\nX-Uncommon-Name: 2\r\nContent-Length: 3\r\n"
	b := []byte(head)
	if n := testing.AllocsPerRun(100, func() { hd.Read(b, head, 0, all) }); n != 0 {
		t.Errorf("Read allocates %v times a head it has room for, want 0", n)
	}
}

// Read keys a line by its name in canonical form however it was sent:
// canonical already, in lower or upper case, or mixed.
func TestHeader_ReadNames(t *testing.T) {
	head := "X-Uncommon-Name: 1\r\nx-uncommon-name: 2\r\nX-UNCOMMON-NAME: 3\r\ncontent-type: 4\r\n" +
		"Content-type: 5\r\nX-Shoal-Entry-Ms: 6\r\nA-b-C: 7\r\nwww-authenticate: 8\r\n"
	var hd Header
	h, ok := hd.Read([]byte(head), head, 0, func(string, string) bool { return true })
	want, err := textproto.NewReader(bufio.NewReader(strings.NewReader(head + "\r\n"))).ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if !ok || !reflect.DeepEqual(h, http.Header(want)) {
		t.Errorf("Read(%q) = %v, %v; want %v as textproto reads it", head, h, ok, want)
	}
}
