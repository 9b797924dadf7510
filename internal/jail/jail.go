package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/landlock-lsm/go-landlock/landlock"
	"golang.org/x/sys/unix"
)

// The descriptors serve passes to the runtime at its start.
const (
	// FdSetup is a unix socket on which serve, once the runtime is in its
	// cgroup, sends one message: a byte and the descriptors the runtime
	// needs (see Setup). Until then the runtime runs no code of its own,
	// while serve makes the cgroup: the two overlap.
	FdSetup = 3
	// FdExe is the shoal binary, which serve starts as /proc/self/fd/4:
	// its folder may be closed to the runtime's uid.
	FdExe = 4
)

// Setup is what serve hands the runtime on FdSetup.
type Setup struct {
	// Deployment, Scratch and Node are detached mounts (open_tree) of the
	// deployment folder (read-only), the instance's scratch folder and
	// node's binary (read-only), made by serve: the runtime could not
	// reach them by path. -1 outside the jail.
	Deployment, Scratch, Node int
	// Instance is what a spare runtime, started before serve knew which
	// instance it would be, is to run; nil for a runtime started for one.
	Instance *Instance
}

// Instance is what a spare runtime learns at its handover, which the
// command line tells a runtime started for one instance.
type Instance struct {
	ID          string        `json:"id"`
	Bundle      string        `json:"bundle"`
	WorkDir     string        `json:"workDir"`
	MaxDuration time.Duration `json:"maxDuration"`
	MemoryMB    int           `json:"memoryMB"`
	NoHelpers   bool          `json:"noHelpers,omitempty"`
	// Env is node's environment.
	Env []string `json:"env"`
	// NodeUID is the uid node runs as, inside the user namespace where
	// jailed; 0 means the runtime's own.
	NodeUID int `json:"nodeUID,omitempty"`
}

// ErrNoSetup is Receive's error when serve closed the socket without a
// message: a spare it no longer needs.
var ErrNoSetup = errors.New("serve closed the setup socket")

// Receive waits for serve's setup message on the socket fd (FdSetup in the
// runtime), then closes it: the three mounts where jail, then for a spare
// the Instance, as JSON up to the socket's end. A runtime in a cgroup waits
// for the message all the same: serve sends it once the cgroup has the
// function's limits.
func Receive(fd int, jail, spare bool) (Setup, error) {
	sup := Setup{Deployment: -1, Scratch: -1, Node: -1}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(fd, b[:], oob, unix.MSG_CMSG_CLOEXEC)
	if err == nil && n == 0 {
		return sup, ErrNoSetup
	}
	if err != nil || n != 1 {
		return sup, fmt.Errorf("wait for serve: %v (%d bytes)", err, n)
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return sup, fmt.Errorf("setup from serve: %w", err)
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return sup, fmt.Errorf("setup from serve: %w", err)
		}
		fds = append(fds, got...)
	}
	want := 0
	if jail {
		want = 3
	}
	if len(fds) != want {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return sup, fmt.Errorf("setup from serve: %d descriptors, want %d", len(fds), want)
	}
	if jail {
		sup.Deployment, sup.Scratch, sup.Node = fds[0], fds[1], fds[2]
	}
	if spare {
		f := os.NewFile(uintptr(fd), "setup")
		fd = -1 // closed by f
		defer f.Close()
		sup.Instance = new(Instance)
		if err := json.NewDecoder(io.LimitReader(f, maxInstance)).Decode(sup.Instance); err != nil {
			return sup, fmt.Errorf("setup from serve: instance: %w", err)
		}
	}
	return sup, nil
}

// maxInstance bounds an Instance's JSON: the function's environment is
// most of it.
const maxInstance = 4 << 20

// Task is where the deployment is inside, read-only, as on AWS Lambda: its
// path on the host would name serve's data folder.
const Task = "/var/task"

// Scratch is where the scratch folder is inside: the runtime's sockets and
// the bootstrap.
const Scratch = "/run/shoal"

// Config says what Enter mounts.
type Config struct {
	// Mounts are serve's detached mounts (see Setup). Required.
	Mounts Setup
	// Root is the scratch folder's path on the host, where Prepare made
	// the new root. Required.
	Root string
	// Node is node's binary; mounted at the same path unless a system
	// folder already holds it. Required.
	Node string
	// Hostname is the instance's host name: its id, which tells instances
	// apart where every node is pid 2.
	Hostname string
	// TmpMB bounds /tmp; 0 means 64.
	TmpMB int
	// NodeUID is the uid node runs as, named in /etc/passwd. Required.
	NodeUID int
	// NodeTasks bounds the tasks (processes and threads) of NodeUID in
	// the jail's user namespace (RLIMIT_NPROC, which the kernel counts per
	// namespace). Set below the cgroup's bound, it makes what node starts
	// run out first and leaves the runtime threads to start; 0 sets none.
	NodeTasks int
}

// system are the host's folders and files node may need, read-only:
// programs and libraries, TLS roots, name resolution. Missing ones are
// skipped.
var system = []string{
	"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin",
	"/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/alternatives",
	"/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
	"/etc/localtime",
}

// devices are bound from the host's /dev.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// Prepare makes the instance's new root at root (the scratch folder's path
// on the host, made for this instance alone), all of it that does not
// depend on which instance it will be: a tmpfs, /dev, /proc and the host's
// system folders read-only. A spare does this while it waits. The runtime
// must be root of fresh user and mount namespaces.
func Prepare(root string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("shoal", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755,size=4m"); err != nil {
		return fmt.Errorf("new root: %w", err)
	}
	if err := mountDev(root); err != nil {
		return err
	}
	if err := mkdirs(root, "/proc"); err != nil {
		return err
	}
	if err := unix.Mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, p := range system {
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			// /bin -> usr/bin on merged systems.
			target, err := os.Readlink(p)
			if err == nil {
				err = mkdirs(root, filepath.Dir(p))
			}
			if err == nil {
				err = os.Symlink(target, filepath.Join(root, p))
			}
			if err != nil {
				return fmt.Errorf("link %s: %w", p, err)
			}
			continue
		}
		if err := bind(p, root, p, true); err != nil {
			return err
		}
	}
	if src := resolvConf(); src != "" {
		if err := bind(src, root, "/etc/resolv.conf", true); err != nil {
			return err
		}
	}
	return nil
}

// Enter finishes the root Prepare made at c.Root with what is the
// instance's (its users, its /tmp, node, the deployment and the scratch
// folder), makes it the runtime's view of the filesystem, read-only, and
// sets the hostname. The runtime is single-purpose from here on: Enter
// changes the root of every thread of the process.
func Enter(c Config) error {
	if c.TmpMB == 0 {
		c.TmpMB = 64
	}
	root := c.Root
	if err := writeUsers(root, c.NodeUID); err != nil {
		return err
	}
	if err := mkdirs(root, "/tmp"); err != nil {
		return err
	}
	opts := "mode=1777,size=" + strconv.Itoa(c.TmpMB) + "m"
	if err := unix.Mount("tmp", filepath.Join(root, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	if !underSystem(c.Node) {
		if err := attach(c.Mounts.Node, root, c.Node, false); err != nil {
			return err
		}
	}
	if err := attach(c.Mounts.Deployment, root, Task, true); err != nil {
		return err
	}
	if err := attach(c.Mounts.Scratch, root, Scratch, true); err != nil {
		return err
	}
	if err := pivot(root); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("root read-only: %w", err)
	}
	if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	if c.NodeTasks > 0 {
		// The runtime, root of the namespace, is not held to it; node,
		// which inherits it, cannot raise it.
		n := uint64(c.NodeTasks)
		if err := unix.Setrlimit(unix.RLIMIT_NPROC, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			return fmt.Errorf("bound node's tasks: %w", err)
		}
	}
	// These lead outside the new root: node must not inherit them.
	for _, fd := range []int{c.Mounts.Deployment, c.Mounts.Scratch, c.Mounts.Node, FdExe} {
		unix.Close(fd)
	}
	return nil
}

// CheckScript is what node, as uid, runs to check a jail: its uid, its
// view of processes and files.
func CheckScript(uid int) string {
	return `
const fs = require('fs');
if (process.getuid() !== ` + strconv.Itoa(uid) + `) throw new Error('node runs as uid ' + process.getuid());
const pids = fs.readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d));
if (pids.length > 2) throw new Error('/proc shows ' + pids.length + ' processes');
fs.writeFileSync('/tmp/check', 'x');
try { fs.writeFileSync('check', 'x'); throw new Error('the deployment is writable'); }
catch (e) { if (e.code !== 'EROFS' && e.code !== 'EACCES') throw e; }
`
}

func underSystem(p string) bool {
	for _, s := range system {
		if p == s || strings.HasPrefix(p, s+"/") {
			return true
		}
	}
	return false
}

// mkdirs makes path (absolute, as seen inside) under root.
func mkdirs(root, path string) error {
	if err := os.MkdirAll(filepath.Join(root, path), 0o755); err != nil {
		return fmt.Errorf("make %s: %w", path, err)
	}
	return nil
}

// attach mounts the detached mount fd at path under root: a folder if dir,
// else a file.
func attach(fd int, root, path string, dir bool) error {
	target, err := mountPoint(root, path, dir)
	if err == nil {
		err = unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", path, err)
	}
	return nil
}

// mountPoint makes path under root, a folder if dir, else an empty file,
// and returns it.
func mountPoint(root, path string, dir bool) (string, error) {
	target := filepath.Join(root, path)
	if dir {
		return target, mkdirs(root, path)
	}
	if err := mkdirs(root, filepath.Dir(path)); err != nil {
		return "", err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	return target, f.Close()
}

// bind mounts src at path under root, read-only if ro, never setuid.
func bind(src, root, path string, ro bool) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("bind %s: %w", path, err)
	}
	target, err := mountPoint(root, path, fi.IsDir())
	if err != nil {
		return fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", path, err)
	}
	// A remount must keep the flags the host's mount has (the kernel locks
	// them in a user namespace), and may add to them.
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return fmt.Errorf("bind %s: %w", path, err)
	}
	flags := unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | mountFlags(st.Flags)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("bind %s read-only: %w", path, err)
	}
	return nil
}

// mountFlags turns statfs flags into the mount flags a remount must keep.
func mountFlags(f int64) uintptr {
	var ms uintptr
	for st, m := range map[int64]uintptr{
		unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC, unix.ST_NOATIME: unix.MS_NOATIME,
		unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME, unix.ST_RDONLY: unix.MS_RDONLY,
	} {
		if f&st != 0 {
			ms |= m
		}
	}
	return ms
}

// writeUsers gives the instance an /etc/passwd and /etc/group that name
// only its two users, so os.userInfo() works.
func writeUsers(root string, uid int) error {
	id := strconv.Itoa(uid)
	files := map[string]string{
		"/etc/passwd": "root:x:0:0:runtime:/:/usr/sbin/nologin\nfunction:x:" + id + ":" + id + ":function:/tmp:/usr/sbin/nologin\n",
		"/etc/group":  "root:x:0:\nfunction:x:" + id + ":\n",
	}
	for p, body := range files {
		if err := mkdirs(root, filepath.Dir(p)); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(body), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// mountDev makes a /dev of the harmless devices.
func mountDev(root string) error {
	dev := filepath.Join(root, "dev")
	if err := mkdirs(root, "/dev"); err != nil {
		return err
	}
	if err := unix.Mount("dev", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range devices {
		if _, err := os.Stat("/dev/" + d); err != nil {
			continue
		}
		if err := bind("/dev/"+d, root, "/dev/"+d, false); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return fmt.Errorf("link /dev/%s: %w", name, err)
		}
	}
	return nil
}

// pivot makes root the root of the mount namespace and drops the old one.
func pivot(root string) error {
	old := filepath.Join(root, ".old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("drop the host's root: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	return nil
}

// denied are the system calls no instance makes: debugging others,
// namespaces and mounts, kernel keys, modules, BPF, io_uring and the like.
// They fail with EPERM.
var denied = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
	"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
	"unshare", "setns", "chroot",
	"bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"keyctl", "add_key", "request_key",
	"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
	"reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "open_by_handle_at", "name_to_handle_at",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
}

// newNamespaces are clone's flags that make namespaces.
const newNamespaces = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// Policy is the seccomp filter Lock loads.
func Policy() seccomp.Policy {
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: denied},
			{Action: seccomp.ActionErrno, NamesWithCondtions: []seccomp.NameWithConditions{{
				Name:       "clone",
				Conditions: []seccomp.Condition{{Argument: 0, Operation: seccomp.BitsSet, Value: newNamespaces}},
			}}},
			// clone3's flags are behind a pointer a filter cannot read:
			// ENOSYS makes libc fall back to clone, which it can.
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
		},
	}
}

// Lock sets no_new_privs, restricts the files every thread of the process
// may reach to the jail's (Landlock, where the kernel has it) and loads the
// seccomp filter on every thread; node, started after, inherits all three.
func Lock(node string) error {
	err := landlock.V7.BestEffort().RestrictPaths(
		landlock.RODirs("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", Task).IgnoreIfMissing(),
		landlock.ROFiles(node).IgnoreIfMissing(),
		// The runtime reads node's load there, and sets its OOM score.
		landlock.RWDirs("/proc", "/tmp", Scratch),
		landlock.RWFiles(devicePaths()...).IgnoreIfMissing(),
	)
	if err != nil {
		return fmt.Errorf("landlock: %w", err)
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	err = seccomp.LoadFilter(seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: Policy()})
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}

func devicePaths() []string {
	var paths []string
	for _, d := range devices {
		paths = append(paths, "/dev/"+d)
	}
	return paths
}

// LandlockABI is the Landlock version the kernel has; 0 is none.
func LandlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// Supported reports whether the kernel can load a seccomp filter.
func Supported() bool { return seccomp.Supported() }

// ResolvConf are the host's resolver configurations, the one to prefer
// first: /etc/resolv.conf, then the upstream servers systemd-resolved
// uses.
var ResolvConf = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

// resolvConf is the configuration node gets at /etc/resolv.conf: the first
// of ResolvConf that names a name server off loopback (systemd-resolved's
// 127.0.0.53 is out of reach of an instance with a network of its own),
// else the first that exists; "" if none does.
func resolvConf() string {
	for _, path := range ResolvConf {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "nameserver" {
				if ip, err := netip.ParseAddr(f[1]); err == nil && !ip.IsLoopback() {
					return path
				}
			}
		}
	}
	for _, path := range ResolvConf {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	return ""
}
