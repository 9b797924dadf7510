package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/internal/api"
	"github.com/shoal-dev/shoal/internal/sandbox"
	"github.com/shoal-dev/shoal/internal/testutil"
)

// attackerHandler tries, on ?do=, what a hostile function would, and says
// what happened as JSON: ok (the call succeeded), error (its code), value
// (what it got, cut at 64 KiB).
const attackerHandler = `
import fs from 'node:fs';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';

const attempt = (f) => {
  try { return { ok: true, value: String(f()).slice(0, 65536) }; }
  catch (e) { return { ok: false, error: e.code || e.message }; }
};

const attacks = {
  read: (q) => attempt(() => fs.readFileSync(q.get('path'), 'latin1')),
  list: (q) => attempt(() => fs.readdirSync(q.get('path')).join(',')),
  write: (q) => attempt(() => { fs.writeFileSync(q.get('path'), 'pwned'); return 'written'; }),
  kill: (q) => attempt(() => { process.kill(Number(q.get('pid')), 'SIGKILL'); return 'sent'; }),
  env: () => ({ ok: true, value: JSON.stringify(process.env) }),
  setuid: () => attempt(() => { process.setuid(0); return process.getuid(); }),
  // A program run with arguments: perl's syscall() reaches any system call.
  run: (q) => {
    const r = spawnSync(q.get('cmd'), q.getAll('arg'), { encoding: 'utf8', timeout: 10000 });
    return { ok: r.status === 0, error: r.error ? r.error.code : 'exit ' + r.status, value: (r.stdout || '') + (r.stderr || '') };
  },
  connect: (q) => new Promise((resolve) => {
    const host = q.get('host') === 'gateway' ? gateway() : q.get('host') || '127.0.0.1';
    const s = net.connect(Number(q.get('port')), host);
    s.setTimeout(1000);
    s.on('connect', () => { s.destroy(); resolve({ ok: true }); });
    s.on('error', (e) => resolve({ ok: false, error: e.code }));
    s.on('timeout', () => { s.destroy(); resolve({ ok: false, error: 'timeout' }); });
  }),
  fetch: async (q) => {
    try {
      const r = await fetch(q.get('url'), { signal: AbortSignal.timeout(5000) });
      return { ok: r.ok, value: await r.text() };
    } catch (e) { return { ok: false, error: (e.cause && e.cause.code) || e.name }; }
  },
  fill: () => {
    const chunk = Buffer.alloc(1 << 20, 1);
    let n = 0;
    try { for (; n < 4096; n++) fs.appendFileSync('/tmp/fill', chunk); }
    catch (e) { return { ok: false, error: e.code, value: String(n) }; }
    return { ok: true, value: String(n) };
  },
  // Many children at once: how many started, and why the rest did not.
  fork: async (q) => {
    const n = Number(q.get('n'));
    const results = await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
      const c = spawn('sleep', ['2'], { stdio: 'ignore' });
      c.on('spawn', () => resolve('spawned'));
      c.on('error', (e) => resolve(e.code));
    })));
    const count = {};
    for (const r of results) count[r] = (count[r] || 0) + 1;
    return { ok: true, value: JSON.stringify(count) };
  },
  // A grandchild in a session of its own, which its parent leaves behind.
  detach: () => attempt(() => {
    spawn('sh', ['-c', 'setsid sleep 300 >/dev/null 2>&1 < /dev/null &'], { stdio: 'ignore', detached: true }).unref();
    return 'left';
  }),
};

// gateway is the default route's next hop, from /proc/net/route (hex,
// little-endian): the host's end of the instance's link.
const gateway = () => {
  for (const line of fs.readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === '00000000' && f[2]) return Buffer.from(f[2], 'hex').reverse().join('.');
  }
  return '127.0.0.1';
};

export default async function (req, res) {
  const q = new URL(req.url, 'http://x').searchParams;
  const attack = attacks[q.get('do')];
  if (!attack) { res.statusCode = 400; return res.end('no such attack'); }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(await attack(q)));
}
`

// bombHandler holds Buffers until the instance is killed; ?n= bounds it.
const bombHandler = instanceJS + `
const held = [];
export default function (req, res) {
  const n = Number(new URL(req.url, 'http://x').searchParams.get('mb') ?? 0);
  for (let i = 0; i < n; i++) held.push(Buffer.alloc(1 << 20, i));
  res.end(instance + ' ' + held.length);
}
`

// outcome is what an attack reported.
type outcome struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	Value string `json:"value"`
}

// isolated starts serve with isolation and skips the test where this host
// gives no namespaces (serve not root): it returns the report too.
func isolated(t *testing.T, args ...string) (*testutil.Serve, api.Isolation) {
	t.Helper()
	s := testutil.StartServe(t, testutil.ServeOptions{Args: append([]string{"--isolation", "auto"}, args...)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, errOut, err := s.CLI(ctx, "doctor", "--server")
	if err != nil {
		t.Fatalf("shoal doctor --server: %v\n%s", err, errOut)
	}
	var iso api.Isolation
	r := controlAPI(t, s, "GET", "/isolation", "")
	if r.status != http.StatusOK || json.Unmarshal(r.body, &iso) != nil {
		t.Fatalf("GET /isolation: %d %s", r.status, r.body)
	}
	for _, p := range iso.Pieces {
		if !strings.Contains(out, p.Name) {
			t.Errorf("shoal doctor --server does not name %s:\n%s", p.Name, out)
		}
		if p.Name == sandbox.PieceNamespaces && !p.On {
			t.Skipf("no namespaces on this host: %s", p.Detail)
		}
	}
	return s, iso
}

// attack has the project "attacker" of s, at base, try do, and returns
// what happened; an attack that gets no outcome fails t with its logs.
func attack(t *testing.T, s *testutil.Serve, base, do string, params url.Values) outcome {
	t.Helper()
	q := url.Values{"do": {do}}
	for k, v := range params {
		q[k] = v
	}
	r := mustSend(t, 60*time.Second, "GET", base+"?"+q.Encode(), "", nil)
	var o outcome
	if r.status != 200 || json.Unmarshal(r.body, &o) != nil {
		logs, _, _ := s.CLI(t.Context(), "logs", "attacker")
		t.Fatalf("attack %s: %d %q\nthe attacker's logs:\n%s", do, r.status, r.body, logs)
	}
	return o
}

// perl makes one raw system call and prints its result and errno.
func perlSyscall(nr int, args ...string) url.Values {
	call := "syscall(" + strconv.Itoa(nr)
	for _, a := range args {
		call += ", " + a
	}
	return url.Values{"cmd": {"perl"}, "arg": {"-e", `my $r = ` + call + `); print "$r $!\n"; exit($r == -1 ? 1 : 0)`}}
}

// TestSandbox_Attacks runs a hostile function's attempts and checks each
// failed, from outside where the harm would show: the host's files, serve,
// the secrets the test knows.
func TestSandbox_Attacks(t *testing.T) {
	s, iso := isolated(t)
	envCLI(t, s, "", "env", "set", "victim", "VICTIM_SECRET", "victim-secret-4711")
	victim := s.Deploy(testutil.WriteProject(t, "victim", map[string]string{"index.mjs": `export default (req, res) => res.end('victim ' + (process.env.VICTIM_SECRET || ''))`}))
	if code, body, _ := testutil.Get(t, victim); code != 200 || body != "victim victim-secret-4711" {
		t.Fatalf("victim: %d %q", code, body)
	}
	base := s.Deploy(testutil.WriteProject(t, "attacker", map[string]string{"index.mjs": attackerHandler}))

	token, err := os.ReadFile(filepath.Join(s.DataDir, "token"))
	if err != nil || len(bytes.TrimSpace(token)) == 0 {
		t.Fatalf("serve's token: %q %v", token, err)
	}
	secret := string(bytes.TrimSpace(token))
	deployments, _ := filepath.Glob(filepath.Join(s.DataDir, "deployments", "*"))
	var victimDir, attackerDir string
	for _, d := range deployments {
		if b, err := os.ReadFile(filepath.Join(d, "index.mjs")); err == nil {
			switch {
			case bytes.Contains(b, []byte("VICTIM_SECRET")):
				victimDir = d
			case bytes.Contains(b, []byte("attacks")):
				attackerDir = d
			}
		}
	}
	if victimDir == "" || attackerDir == "" {
		t.Fatalf("deployment folders not found among %q", deployments)
	}
	servePid := servePid(t, s)
	credentials := filepath.Join(s.Env[0][len("XDG_CONFIG_HOME="):], "shoal", "credentials.json")
	if _, err := os.Stat(credentials); err != nil {
		t.Fatalf("the CLI's credentials file: %v", err)
	}
	_, nodeUID := sandbox.HostUIDs("attacker")

	// leaks fails the case if an outcome holds a secret the test knows.
	leaks := func(t *testing.T, o outcome) {
		t.Helper()
		for _, sec := range []string{secret, "victim-secret-4711", sandbox.TokenEnv} {
			if strings.Contains(o.Value, sec) {
				t.Errorf("the function got %q: %.200q", sec, o.Value)
			}
		}
	}
	failed := func(t *testing.T, o outcome) {
		t.Helper()
		if o.OK {
			t.Errorf("the attack succeeded: %.300q", o.Value)
		}
		leaks(t, o)
	}
	tests := []struct {
		name   string
		do     string
		params url.Values
		check  func(t *testing.T, o outcome)
	}{
		{"read_token", "read", url.Values{"path": {filepath.Join(s.DataDir, "token")}}, failed},
		{"read_store", "read", url.Values{"path": {filepath.Join(s.DataDir, "shoal.db")}}, failed},
		{"list_data_folder", "list", url.Values{"path": {s.DataDir}}, failed},
		{"read_cli_credentials", "read", url.Values{"path": {credentials}}, failed},
		{"read_other_project_code", "read", url.Values{"path": {filepath.Join(victimDir, "index.mjs")}}, failed},
		{"list_other_deployments", "list", url.Values{"path": {filepath.Dir(victimDir)}}, failed},
		{"read_host_shadow", "read", url.Values{"path": {"/etc/shadow"}}, failed},
		{"read_host_root_home", "list", url.Values{"path": {"/root"}}, failed},
		{"read_serve_environ", "read", url.Values{"path": {fmt.Sprintf("/proc/%d/environ", servePid)}}, failed},
		{"read_serve_cmdline", "read", url.Values{"path": {fmt.Sprintf("/proc/%d/cmdline", servePid)}}, func(t *testing.T, o outcome) {
			failed(t, o)
			if strings.Contains(o.Value, s.DataDir) {
				t.Errorf("serve's command line is visible: %q", o.Value)
			}
		}},
		{"read_runtime_environ", "read", url.Values{"path": {"/proc/1/environ"}}, failed},
		{"read_runtime_memory", "read", url.Values{"path": {"/proc/1/mem"}}, failed},
		{"see_only_own_processes", "list", url.Values{"path": {"/proc"}}, func(t *testing.T, o outcome) {
			var pids []int
			for _, f := range strings.Split(o.Value, ",") {
				if n, err := strconv.Atoi(f); err == nil {
					pids = append(pids, n)
				}
			}
			if !o.OK || len(pids) == 0 || len(pids) > 3 || slices.Contains(pids, servePid) {
				t.Errorf("/proc shows %v (ok %v), want the instance's own two or three", pids, o.OK)
			}
		}},
		{"other_project_env", "run", url.Values{"cmd": {"sh"}, "arg": {"-c", "cat /proc/*/environ"}}, leaks},
		{"no_platform_secret_in_env", "env", nil, func(t *testing.T, o outcome) {
			leaks(t, o)
			var env map[string]string
			if err := json.Unmarshal([]byte(o.Value), &env); err != nil {
				t.Fatalf("env %q: %v", o.Value, err)
			}
			for k := range env {
				if strings.HasPrefix(k, "SHOAL_") {
					t.Errorf("the function's environment has %s", k)
				}
			}
		}},
		{"kill_serve", "kill", url.Values{"pid": {strconv.Itoa(servePid)}}, func(t *testing.T, o outcome) {
			if !alive(servePid) {
				t.Fatalf("serve (pid %d) was killed", servePid)
			}
		}},
		{"kill_everything", "kill", url.Values{"pid": {"-1"}}, func(t *testing.T, o outcome) {
			if !alive(servePid) {
				t.Fatalf("serve (pid %d) was killed", servePid)
			}
			if code, body, _ := testutil.Get(t, victim); code != 200 {
				t.Errorf("the neighbour after kill(-1): %d %q", code, body)
			}
		}},
		{"write_deployment", "write", url.Values{"path": {filepath.Join(attackerDir, "pwned")}}, func(t *testing.T, o outcome) {
			failed(t, o)
			if _, err := os.Stat(filepath.Join(attackerDir, "pwned")); err == nil {
				t.Errorf("the function wrote into its deployment on the host")
			}
		}},
		{"overwrite_own_bundle", "write", url.Values{"path": {filepath.Join(attackerDir, "index.mjs")}}, func(t *testing.T, o outcome) {
			failed(t, o)
			if b, _ := os.ReadFile(filepath.Join(attackerDir, "index.mjs")); !bytes.Contains(b, []byte("attacks")) {
				t.Errorf("the function changed its bundle on the host: %.100q", b)
			}
		}},
		{"write_host_tmp", "write", url.Values{"path": {"/tmp/shoal-e2e-pwned"}}, func(t *testing.T, o outcome) {
			if _, err := os.Stat("/tmp/shoal-e2e-pwned"); err == nil {
				os.Remove("/tmp/shoal-e2e-pwned")
				t.Errorf("the function wrote the host's /tmp")
			}
		}},
		{"become_root", "setuid", nil, failed},
		{"unshare_user_namespace", "run", url.Values{"cmd": {"unshare"}, "arg": {"-U", "-r", "true"}}, failed},
		{"mount_tmpfs", "run", url.Values{"cmd": {"mount"}, "arg": {"-t", "tmpfs", "x", "/tmp"}}, failed},
		// 101 ptrace(PTRACE_ATTACH=16, pid 1)
		{"ptrace_runtime", "run", perlSyscall(101, "16", "1", "0", "0"), failed},
		// 272 unshare(CLONE_NEWUSER)
		{"unshare_syscall", "run", perlSyscall(272, "0x10000000"), failed},
		// 321 bpf(BPF_PROG_LOAD=5, NULL, 0)
		{"bpf", "run", perlSyscall(321, "5", "0", "0"), failed},
		// 425 io_uring_setup(1, NULL)
		{"io_uring", "run", perlSyscall(425, "1", "0"), failed},
		// 250 keyctl(KEYCTL_GET_KEYRING_ID=0, -4 session keyring, 0)
		{"keyctl", "run", perlSyscall(250, "0", "-4", "0"), failed},
		// 103 syslog(SYSLOG_ACTION_READ_ALL=3, NULL, 0)
		{"read_kernel_log", "run", perlSyscall(103, "3", "0", "0"), failed},
		// Only Landlock refuses this: "/" is the jail's own read-only root.
		{"list_root_past_landlock", "list", url.Values{"path": {"/"}}, func(t *testing.T, o outcome) {
			if !pieceOn(iso, sandbox.PieceLandlock) {
				t.Skip("no Landlock on this host")
			}
			failed(t, o)
		}},
		// Twenty background jobs that outlive their shell: orphans, which
		// the runtime (pid 1 inside) inherits, and reaps when they exit.
		{"orphans_leave_no_zombies", "run", url.Values{"cmd": {"sh"}, "arg": {"-c", "for i in $(seq 20); do (sleep 0.1 &); done; sleep 0.5"}}, func(t *testing.T, o outcome) {
			if !o.OK {
				t.Fatalf("the shell: %s %q", o.Error, o.Value)
			}
			testutil.Eventually(t, 10*time.Second, "no zombie of the function's uid", func() bool {
				for _, pid := range processesOf(nodeUID) {
					if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(b, []byte(") Z ")) {
						return false
					}
				}
				return true
			})
		}},
		{"fill_tmp", "fill", nil, func(t *testing.T, o outcome) {
			mb, _ := strconv.Atoi(o.Value)
			if o.OK || o.Error != "ENOSPC" || mb > 512 {
				t.Errorf("/tmp took %d MB (ok %v, %s), want it full (ENOSPC) at its bound, at most 512 MB", mb, o.OK, o.Error)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := attack(t, s, base, tt.do, tt.params)
			t.Logf("%s: ok %v error %q value %.120q", tt.name, o.OK, o.Error, o.Value)
			tt.check(t, o)
		})
	}

	t.Run("fork_bomb", func(t *testing.T) {
		o := attack(t, s, base, "fork", url.Values{"n": {"600"}})
		var count map[string]int
		if err := json.Unmarshal([]byte(o.Value), &count); err != nil {
			t.Fatalf("fork: %q", o.Value)
		}
		// The runtime keeps the tasks it needs: the invocation answered.
		if count["spawned"] > sandbox.PidsMax-sandbox.RuntimeTasks || count["EAGAIN"] == 0 {
			t.Errorf("600 children: %v, want at most %d started and the rest refused (EAGAIN)", count, sandbox.PidsMax-sandbox.RuntimeTasks)
		}
		if n := len(processesOf(nodeUID)); n > sandbox.PidsMax {
			t.Errorf("the host sees %d processes of the function's uid, want at most %d", n, sandbox.PidsMax)
		}
		if code, body, _ := testutil.Get(t, victim); code != 200 {
			t.Errorf("the neighbour during a fork bomb: %d %q", code, body)
		}
	})
	t.Run("detached_child_dies_with_its_instance", func(t *testing.T) {
		testutil.Eventually(t, 20*time.Second, "the fork bomb's children are gone", func() bool {
			return len(processesOf(nodeUID)) <= 2
		})
		if o := attack(t, s, base, "detach", nil); !o.OK {
			t.Fatalf("detach: %+v", o)
		}
		if len(processesOf(nodeUID)) == 0 {
			t.Fatalf("no process of the function's uid %d on the host", nodeUID)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, errOut, err := s.CLI(ctx, "rm", "attacker"); err != nil {
			t.Fatalf("shoal rm: %v\n%s", err, errOut)
		}
		testutil.Eventually(t, 20*time.Second, "the function's processes are gone after its instance stopped", func() bool {
			return len(processesOf(nodeUID)) == 0
		})
	})
}

// TestSandbox_Network: a function reaches hosts beyond this one, and
// nothing of the platform: not the control API, the tunnel listener, a
// loopback database, the host by its own address, or another instance.
func TestSandbox_Network(t *testing.T) {
	tunnelPort := testutil.FreePort(t)
	s, iso := isolated(t, "--tunnel-listen", "127.0.0.1:"+strconv.Itoa(tunnelPort))
	if !pieceOn(iso, sandbox.PieceNetwork) {
		t.Skip("no network namespaces on this host")
	}
	outside, hostAddr := testutil.OutsideHost(t)
	base := s.Deploy(testutil.WriteProject(t, "attacker", map[string]string{"index.mjs": attackerHandler}))
	neighbour := s.Deploy(testutil.WriteProject(t, "neighbour", map[string]string{"index.mjs": `
import net from 'node:net';
import os from 'node:os';
net.createServer((c) => c.end('neighbour\n')).listen(7000, '0.0.0.0');
export default (req, res) => res.end(((os.networkInterfaces().eth0 || []).find((a) => a.family === 'IPv4') || {}).address || 'none');
`}))
	_, neighbourAddr, _ := testutil.Get(t, neighbour)
	if net.ParseIP(neighbourAddr) == nil {
		t.Fatalf("the neighbour's address: %q", neighbourAddr)
	}
	// The neighbour listens: the host reaches it, so what stops another
	// instance is the sandbox.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(neighbourAddr, "7000"), 5*time.Second); err != nil {
		t.Fatalf("the host cannot reach the neighbour's listener: %v", err)
	} else {
		c.Close()
	}
	// A "database" on the host's loopback, and one on every address.
	loopbackDB := testutil.Listen(t, "127.0.0.1:0", "")
	anyDB := testutil.Listen(t, "0.0.0.0:0", "")
	serveURL, _ := url.Parse(s.URL)

	unreachable := func(t *testing.T, o outcome) {
		t.Helper()
		if o.OK {
			t.Errorf("the function connected")
		}
	}
	for _, tt := range []struct {
		name   string
		params url.Values
	}{
		{"control_api", url.Values{"host": {serveURL.Hostname()}, "port": {serveURL.Port()}}},
		{"control_api_via_host_address", url.Values{"host": {"gateway"}, "port": {serveURL.Port()}}},
		{"tunnel_listener", url.Values{"port": {strconv.Itoa(tunnelPort)}}},
		{"loopback_database", url.Values{"port": {strconv.Itoa(loopbackDB)}}},
		{"host_database_via_host_address", url.Values{"host": {"gateway"}, "port": {strconv.Itoa(anyDB)}}},
		{"host_database_via_outside_address", url.Values{"host": {hostAddr}, "port": {strconv.Itoa(anyDB)}}},
		{"other_instance", url.Values{"host": {neighbourAddr}, "port": {"7000"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := attack(t, s, base, "connect", tt.params)
			t.Logf("%s: ok %v error %q", tt.name, o.OK, o.Error)
			unreachable(t, o)
		})
	}
	t.Run("outbound_is_masqueraded", func(t *testing.T) {
		o := attack(t, s, base, "fetch", url.Values{"url": {outside}})
		if !o.OK || o.Value != hostAddr {
			t.Errorf("fetch %s: ok %v error %q value %q; want the answer, seen from the host's %s", outside, o.OK, o.Error, o.Value, hostAddr)
		}
	})
}

// TestSandbox_MemoryBomb: a function past its memory is killed alone; its
// callers get FUNCTION_OUT_OF_MEMORY, its neighbour goes on, and its next
// invocation gets a fresh instance.
func TestSandbox_MemoryBomb(t *testing.T) {
	s, _ := isolated(t)
	neighbour := s.Deploy(testutil.WriteProject(t, "neighbour", map[string]string{"index.mjs": instanceJS + `export default (req, res) => res.end(instance)`}))
	base := s.Deploy(testutil.WriteProject(t, "bomb", map[string]string{"index.mjs": bombHandler, "shoal.json": `{ "memory": 128 }`}))
	_, before, _ := testutil.Get(t, base+"?mb=0")
	_, neighbourBefore, _ := testutil.Get(t, neighbour)

	r := mustSend(t, 60*time.Second, "GET", base+"?mb=1024", "application/json", nil)
	logsOut, _, _ := s.CLI(t.Context(), "logs", "bomb")
	if err := checkPlatformError(r, http.StatusInternalServerError, "FUNCTION_OUT_OF_MEMORY"); err != nil {
		t.Fatalf("%v; logs:\n%s", err, logsOut)
	}
	if code, body, _ := testutil.Get(t, neighbour); code != 200 || body != neighbourBefore {
		t.Errorf("the neighbour after the bomb: %d %q, want 200 from its same instance %q", code, body, neighbourBefore)
	}
	code, after, _ := testutil.Get(t, base+"?mb=0")
	if code != 200 || after == before {
		t.Errorf("after the bomb: %d %q, want 200 from a new instance (not %q)", code, after, before)
	}
	testutil.Eventually(t, 10*time.Second, "the logs say the instance ran out of memory", func() bool {
		logsOut, _, _ = s.CLI(t.Context(), "logs", "bomb")
		return strings.Contains(logsOut, "ran out of memory (128 MB)")
	})
}

// TestSandbox_Strict refuses to start while a piece is missing, naming
// it, and starts where every piece applies. A node that cannot run in the
// jail makes the jail check fail, and the pieces that need the jail go.
func TestSandbox_Strict(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testutil.Binary(t), "serve", "--listen", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data"),
		"--isolation", "strict", "--node", "/bin/false")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve --isolation strict with a node that cannot run: %v\n%s", err, out)
	}
	for _, want := range []string{"isolation strict: pieces missing", sandbox.PieceNamespaces, sandbox.PieceNetwork} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --isolation strict says %q, want %q in it", out, want)
		}
	}
	bad := exec.CommandContext(ctx, testutil.Binary(t), "serve", "--isolation", "some")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "want auto, strict or off") {
		t.Errorf("serve --isolation some: %v %q", err, out)
	}

	doctor, _ := exec.CommandContext(ctx, testutil.Binary(t), "doctor").CombinedOutput()
	if !strings.Contains(string(doctor), "every piece applies") {
		t.Skipf("not every piece applies on this host:\n%s", doctor)
	}
	s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--isolation", "strict"}})
	url := s.Deploy(testutil.WriteProject(t, "strict", map[string]string{"index.mjs": `export default (req, res) => res.end('ok')`}))
	if code, body, _ := testutil.Get(t, url); code != 200 || body != "ok" {
		t.Errorf("GET under strict isolation: %d %q", code, body)
	}
}

// TestSandbox_ReportLine: serve says in one line what applies.
func TestSandbox_ReportLine(t *testing.T) {
	for _, mode := range []string{"auto", "off"} {
		t.Run(mode, func(t *testing.T) {
			s := testutil.StartServe(t, testutil.ServeOptions{Args: []string{"--isolation", mode}})
			if !strings.Contains(s.Output(), "isolation "+mode+": ") {
				t.Errorf("serve output has no isolation line:\n%s", s.Output())
			}
			url := s.Deploy(testutil.WriteProject(t, "plain", map[string]string{"index.mjs": `export default (req, res) => res.end('ok')`}))
			if code, body, _ := testutil.Get(t, url); code != 200 || body != "ok" {
				t.Errorf("GET: %d %q", code, body)
			}
		})
	}
}

// servePid is the pid of s's serve process.
func servePid(t *testing.T, s *testutil.Serve) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(b, []byte("\x00serve\x00")) && bytes.Contains(b, []byte(s.DataDir)) {
			return pid
		}
	}
	t.Fatalf("no serve process of %s", s.DataDir)
	return 0
}

func pieceOn(iso api.Isolation, name string) bool {
	for _, p := range iso.Pieces {
		if p.Name == name {
			return p.On
		}
	}
	return false
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// processesOf returns the host's processes running as uid.
func processesOf(uid int) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name()), &st) == nil && int(st.Uid) == uid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestSandbox_DeployCheckIsJailed: the top-level code that runs at deploy,
// when shoal loads a bundle to check it, runs in an instance's sandbox too;
// a bundle that throws there is still refused with its message.
func TestSandbox_DeployCheckIsJailed(t *testing.T) {
	s, _ := isolated(t)
	marker := fmt.Sprintf("/tmp/shoal-e2e-deploy-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(marker) })
	url := s.Deploy(testutil.WriteProject(t, "atdeploy", map[string]string{"index.mjs": `
import fs from 'node:fs';
let leaked = 'none';
try { leaked = fs.readFileSync(` + strconv.Quote(filepath.Join(s.DataDir, "token")) + `, 'utf8'); } catch (e) { leaked = e.code; }
try { fs.writeFileSync(` + strconv.Quote(marker) + `, leaked); } catch {}
export default (req, res) => res.end(leaked);
`}))
	if _, err := os.Stat(marker); err == nil {
		b, _ := os.ReadFile(marker)
		t.Errorf("top-level code wrote the host's %s at deploy: %q", marker, b)
	}
	if code, body, _ := testutil.Get(t, url); code != 200 || body != "ENOENT" {
		t.Errorf("GET: %d %q, want 200 ENOENT (no data folder in the jail)", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, errOut, err := s.CLI(ctx, "deploy", testutil.WriteProject(t, "throws", map[string]string{"index.mjs": `throw new Error('refused at load'); export default () => {};`}))
	if err == nil || !strings.Contains(errOut, "refused at load") {
		t.Errorf("deploy of a bundle that throws: %v %q, want refused with its message", err, errOut)
	}
}
