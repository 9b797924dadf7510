package jail

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPolicy_Assembles(t *testing.T) {
	p := Policy()
	insts, err := p.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	// A classic BPF program runs at most 4096 instructions.
	if len(insts) == 0 || len(insts) > 4096 {
		t.Errorf("%d instructions", len(insts))
	}
	for _, name := range []string{"ptrace", "mount", "unshare", "setns", "bpf", "io_uring_setup", "keyctl", "init_module", "process_vm_readv", "perf_event_open"} {
		if !slices.Contains(denied, name) {
			t.Errorf("%s is not denied", name)
		}
	}
}

// TestReceive hands descriptors over a real socket pair, as serve does.
func TestReceive(t *testing.T) {
	tests := []struct {
		name    string
		send    int
		jail    bool
		spare   string // the JSON sent after the descriptors, for a spare
		wantErr bool
		want    bool // the mounts
	}{
		{"jail", 3, true, "", false, true},
		{"cgroup_only", 0, false, "", false, false},
		{"too_few", 1, true, "", true, false},
		{"too_many", 1, false, "", true, false},
		{"spare", 3, true, `{"id":"i-1","bundle":"/d/index.mjs","env":["A=1"],"nodeUID":7}`, false, true},
		{"spare_not_jailed", 0, false, `{"id":"i-1","bundle":"/d/index.mjs"}`, false, false},
		{"spare_bad_json", 0, false, `{"id":`, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pair[0])
			var fds []int
			for i := 0; i < tt.send; i++ {
				f, err := os.Open(os.DevNull)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				fds = append(fds, int(f.Fd()))
			}
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			if err := unix.Sendmsg(pair[0], []byte{1}, oob, nil, 0); err != nil {
				t.Fatal(err)
			}
			if tt.spare != "" {
				if _, err := unix.Write(pair[0], []byte(tt.spare)); err != nil {
					t.Fatal(err)
				}
				unix.Shutdown(pair[0], unix.SHUT_WR)
			}
			sup, err := Receive(pair[1], tt.jail, tt.spare != "")
			if (err != nil) != tt.wantErr {
				t.Fatalf("Receive: %v, want error %v", err, tt.wantErr)
			}
			if (sup.Deployment >= 0 && sup.Scratch >= 0 && sup.Node >= 0) != tt.want {
				t.Errorf("got %+v, want mounts %v", sup, tt.want)
			}
			for _, fd := range []int{sup.Deployment, sup.Scratch, sup.Node} {
				if fd >= 0 {
					if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
						t.Errorf("fd %d: flags %d, %v; want close-on-exec, so node never holds it", fd, flags, err)
					}
					unix.Close(fd)
				}
			}
			if tt.spare != "" && !tt.wantErr {
				var want Instance
				json.Unmarshal([]byte(tt.spare), &want)
				if sup.Instance == nil || !reflect.DeepEqual(*sup.Instance, want) {
					t.Errorf("instance %+v, want %+v", sup.Instance, want)
				}
			}
			if _, err := unix.FcntlInt(uintptr(pair[1]), unix.F_GETFD, 0); err == nil {
				t.Errorf("the setup socket is still open after Receive")
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stub := write("stub", "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0\n")
	upstream := write("upstream", "nameserver 10.0.0.2\nnameserver 1.1.1.1\n")
	plain := write("plain", "search example\nnameserver 192.0.2.53\n")
	defer func(old []string) { ResolvConf = old }(ResolvConf)
	for _, tt := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"host_resolver_reachable", []string{plain, upstream}, plain},
		{"loopback_stub_then_upstream", []string{stub, upstream}, upstream},
		{"loopback_stub_alone", []string{stub, filepath.Join(dir, "none")}, stub},
		{"none", []string{filepath.Join(dir, "none")}, ""},
	} {
		ResolvConf = tt.paths
		if got := resolvConf(); got != tt.want {
			t.Errorf("%s: resolvConf() = %q, want %q", tt.name, got, tt.want)
		}
	}
}
