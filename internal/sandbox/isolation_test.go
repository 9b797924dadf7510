package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseMode(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"auto", Auto, false}, {"strict", Strict, false}, {"off", Off, false}, {"", "", true}, {"on", "", true},
	} {
		got, err := ParseMode(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReport_Line(t *testing.T) {
	r := Report{Mode: Auto, Pieces: []Piece{{Name: "cgroup", On: true}, {Name: "seccomp", On: true}, {Name: "landlock"}}}
	if got, want := r.Line(), "isolation auto: cgroup, seccomp; missing: landlock"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := (Report{Mode: Off, Pieces: []Piece{{Name: "cgroup"}}}).Line(), "isolation off: none; missing: cgroup"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestHostUIDs(t *testing.T) {
	seen := map[int]string{}
	for _, p := range []string{"a", "b", "hello", "shop", "api"} {
		rt, node := HostUIDs(p)
		// Every namespace maps [uidBase, uidBase+uidSlots] from 0: the
		// runtime is its root, node the project's uid in it.
		if rt != uidBase || node <= uidBase || node > uidBase+uidSlots || node-uidBase != nodeUID(p) {
			t.Errorf("HostUIDs(%q) = %d, %d; want %d and one in (%d, %d] that is %d inside", p, rt, node, uidBase, uidBase, uidBase+uidSlots, nodeUID(p))
		}
		if other, ok := seen[node]; ok {
			t.Errorf("%q and %q share node's uid %d", p, other, node)
		}
		seen[node] = p
		if _, again := HostUIDs(p); again != node {
			t.Errorf("HostUIDs(%q) changed: %d then %d", p, node, again)
		}
	}
}

func TestParseOOMKills(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     int
		ok       bool
	}{
		{"v1", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3, true},
		{"v2", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n", 1, true},
		{"none", "oom_kill_disable 0\n", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseOOMKills([]byte(tt.in))
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %d %v, want %d %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestNew_Off: with isolation off nothing is tried and every piece says so.
func TestNew_Off(t *testing.T) {
	sb := mustNew(t, Config{Exe: "/bin/true"})
	r := sb.Report()
	if r.Mode != Off || len(r.Missing()) != len(r.Pieces) || sb.cgroups != nil || sb.jailed {
		t.Errorf("off: report %+v, cgroups %v, jailed %v; want every piece off", r, sb.cgroups, sb.jailed)
	}
}

// TestNew_StrictRefuses: strict names each missing piece. A "runtime"
// that never says its jail check passed leaves the jail off, and the
// network with it.
func TestNew_StrictRefuses(t *testing.T) {
	_, err := New(Config{Exe: "/bin/true", Isolation: Strict})
	if !errors.Is(err, ErrStrict) {
		t.Fatalf("got %v, want ErrStrict (the jail check cannot pass)", err)
	}
	for _, name := range []string{PieceNamespaces, PieceFiles, PieceNetwork} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

// TestCgroup_Limits makes a real instance cgroup, puts a process in it and
// reads its limits and usage back; skipped where serve could not make one.
func TestCgroup_Limits(t *testing.T) {
	fs, what, err := openCgroups()
	if err != nil {
		t.Skipf("no cgroup here: %v", err)
	}
	defer fs.close()
	t.Logf("cgroups: %s", what)
	g, err := fs.create("t1")
	if err != nil {
		t.Fatal(err)
	}
	defer g.remove()
	if err := g.limit(256); err != nil {
		t.Fatal(err)
	}
	wantMem := int64(256+SlackMB) << 20
	if fs.v2 {
		if got := readInt(filepath.Join(g.dirs[""], "memory.max")); got != wantMem {
			t.Errorf("memory.max %d, want %d", got, wantMem)
		}
		if got := readInt(filepath.Join(g.dirs[""], "pids.max")); got != PidsMax {
			t.Errorf("pids.max %d, want %d", got, PidsMax)
		}
	} else {
		if got := readInt(filepath.Join(g.dirs["memory"], "memory.limit_in_bytes")); got != wantMem {
			t.Errorf("memory.limit_in_bytes %d, want %d", got, wantMem)
		}
		if got := readInt(filepath.Join(g.dirs["pids"], "pids.max")); got != PidsMax {
			t.Errorf("pids.max %d, want %d", got, PidsMax)
		}
	}
	// A process that, once in the cgroup, takes some memory and burns CPU,
	// then is killed with it. (v1 leaves what it held before with its old
	// cgroup.)
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", `sleep 0.1; x=$(head -c 4000000 /dev/zero | tr '\0' a); while :; do :; done`}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if err := g.add(p.Pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	g.kill()
	p.Wait()
	u := g.counts()
	if u.CPU < 50*time.Millisecond || u.CPU > 5*time.Second || u.PeakMemory <= 0 {
		t.Errorf("counts %+v: want the CPU of about 400 ms of spinning, and some memory", u)
	}
	// The file the runtime watches for OOM kills: there, and none.
	b, err := os.ReadFile(g.oomFile())
	if kills, ok := ParseOOMKills(b); err != nil || !ok || kills != 0 {
		t.Errorf("%s: %q %v, want oom_kill 0", g.oomFile(), b, err)
	}
	if procs, _ := os.ReadFile(filepath.Join(g.dirs[map[bool]string{true: "", false: "memory"}[fs.v2]], "cgroup.procs")); len(strings.TrimSpace(string(procs))) != 0 {
		t.Errorf("cgroup still holds %q after kill", procs)
	}
}

func TestSearchableTempDir(t *testing.T) {
	open := t.TempDir()
	os.Chmod(filepath.Dir(open), 0o755) // t.TempDir's parent is private
	os.Chmod(open, 0o755)
	private := filepath.Join(open, "private")
	os.Mkdir(private, 0o700)
	for _, tt := range []struct {
		name, tmpdir, want string
	}{{"searchable", open, open}, {"private", private, "/tmp"}, {"missing", filepath.Join(open, "none"), "/tmp"}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TMPDIR", tt.tmpdir)
			if got := searchableTempDir(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
