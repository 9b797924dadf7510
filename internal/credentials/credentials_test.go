package credentials

import (
	"os"
	"testing"
)

func TestSaveToken(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	if got, err := Token("http://127.0.0.1:3000"); err != nil || got != "" {
		t.Fatalf("Token before Save = %q, %v; want empty", got, err)
	}
	if err := Save("t1", "http://127.0.0.1:3000", "http://localhost:3000/"); err != nil {
		t.Fatal(err)
	}
	if err := Save("t2", "http://127.0.0.1:4000"); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ url, want string }{
		{"http://127.0.0.1:3000", "t1"},
		{"http://127.0.0.1:3000/", "t1"},
		{"http://localhost:3000", "t1"},
		{"http://127.0.0.1:4000", "t2"},
		{"http://127.0.0.1:5000", ""},
	}
	for _, tt := range tests {
		if got, err := Token(tt.url); err != nil || got != tt.want {
			t.Errorf("Token(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
	}
	path, _ := Path()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("credentials mode = %o, want 600", got)
	}
}
