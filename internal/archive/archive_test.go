package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestPackUnpack_RoundTrip(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"index.mjs":                     "export default () => {}",
		"node_modules/dep/index.js":     "module.exports = 1",
		"node_modules/dep/package.json": `{"name":"dep"}`,
		"deep/a/b/c.txt":                "c",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	os.MkdirAll(filepath.Join(src, ".git"), 0o755)
	os.WriteFile(filepath.Join(src, ".git", "HEAD"), []byte("x"), 0o644)

	var buf bytes.Buffer
	if err := Pack(src, &buf); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := Unpack(&buf, dst, 1<<20); err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); !os.IsNotExist(err) {
		t.Errorf(".git was packed: stat err = %v", err)
	}
}

func tarGz(t *testing.T, hdrs ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range hdrs {
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	gz.Close()
	return &buf
}

func TestUnpack_Refuses(t *testing.T) {
	tests := []struct {
		name   string
		hdr    *tar.Header
		unsafe bool
	}{
		{"parent", &tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Size: 1, Mode: 0o644}, true},
		{"absolute", &tar.Header{Typeflag: tar.TypeReg, Name: "/etc/evil", Size: 1, Mode: 0o644}, true},
		{"nested_parent", &tar.Header{Typeflag: tar.TypeReg, Name: "a/../../evil", Size: 1, Mode: 0o644}, true},
		{"too_big", &tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: 2048, Mode: 0o644}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := t.TempDir()
			err := Unpack(tarGz(t, tt.hdr), filepath.Join(dst, "in"), 1024)
			if err == nil {
				t.Fatal("Unpack succeeded, want an error")
			}
			if got := errors.Is(err, ErrUnsafe); got != tt.unsafe {
				t.Errorf("errors.Is(err, ErrUnsafe) = %v, want %v (err %v)", got, tt.unsafe, err)
			}
			if _, err := os.Stat(filepath.Join(dst, "evil")); !os.IsNotExist(err) {
				t.Error("a file was written outside the target")
			}
		})
	}
}

func TestUnpack_SkipsLinks(t *testing.T) {
	dst := t.TempDir()
	buf := tarGz(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc/passwd"})
	if err := Unpack(buf, dst, 1024); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "link")); !os.IsNotExist(err) {
		t.Errorf("symlink was created: %v", err)
	}
}

func TestUnpack_NotGzip(t *testing.T) {
	if err := Unpack(bytes.NewReader([]byte("plain")), t.TempDir(), 1024); err == nil {
		t.Error("Unpack of a non-gzip stream succeeded")
	}
}
