package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroup limits every instance gets, beside its memory.
const (
	// PidsMax bounds the tasks (processes and threads) of one instance:
	// node with its loops uses about 30, the runtime about 12.
	PidsMax = 256
	// RuntimeTasks of PidsMax are the runtime's alone: in a jail, node
	// and what it starts may have the rest (jail.Config.NodeTasks), so a
	// fork bomb cannot keep the runtime from starting a thread, which
	// would end it and the instance.
	RuntimeTasks = 32
	// SlackMB is added to a function's memory for the runtime beside node.
	SlackMB = 32
)

// cgroupFS is the host's cgroup hierarchy as shoal uses it: v2 where the
// memory and pids controllers are enabled, else the v1 controllers.
type cgroupFS struct {
	v2 bool
	// parents are the folders under which instances' cgroups are made:
	// one on v2, one per controller on v1 (memory, pids, cpu, cpuacct).
	parents map[string]string
}

// v1Controllers are the v1 hierarchies an instance joins; memory and pids
// are required, cpu and cpuacct are used where mounted.
var v1Controllers = []string{"memory", "pids", "cpu", "cpuacct"}

// openCgroups finds a writable cgroup hierarchy and makes serve's own
// folder in it, named by serve's pid. It reports what it found.
func openCgroups() (*cgroupFS, string, error) {
	own, err := ownCgroups()
	if err != nil {
		return nil, "", err
	}
	name := "shoal-" + strconv.Itoa(os.Getpid())
	// v2: the unified mount, where serve's own cgroup may delegate memory
	// and pids to children.
	if mnt := cgroup2Mount(); mnt != "" {
		base := filepath.Join(mnt, own[""])
		sweep(base)
		ctrls, _ := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
		// serve's cgroup must hand memory and pids on to its children: it
		// can where it is the root of its hierarchy or was delegated a
		// subtree without processes of its own above it. (Untested on this
		// project's machines, whose v2 hierarchy has no controllers.)
		os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0)
		if hasFields(string(ctrls), "memory", "pids") {
			dir := filepath.Join(base, name)
			if err := os.Mkdir(dir, 0o755); err == nil || errors.Is(err, os.ErrExist) {
				// A v2 cgroup with processes cannot delegate: serve's
				// children live one level below a folder of no processes.
				if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids +cpu"), 0); err == nil ||
					os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids"), 0) == nil {
					return &cgroupFS{v2: true, parents: map[string]string{"": dir}}, "v2 (memory, pids, cpu)", nil
				}
				os.Remove(dir)
			}
		}
	}
	fs := &cgroupFS{parents: map[string]string{}}
	var used []string
	for _, c := range v1Controllers {
		mnt := filepath.Join("/sys/fs/cgroup", c)
		if !isCgroupMount(mnt) {
			continue
		}
		sweep(filepath.Join(mnt, own[c]))
		dir := filepath.Join(mnt, own[c], name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			continue
		}
		fs.parents[c] = dir
		used = append(used, c)
	}
	if fs.parents["memory"] == "" || fs.parents["pids"] == "" {
		fs.close()
		return nil, "", fmt.Errorf("no writable cgroup with memory and pids controllers (v2 controllers: none usable; v1: %s)", strings.Join(used, ", "))
	}
	return fs, "v1 (" + strings.Join(used, ", ") + ")", nil
}

// sweep removes the cgroups that a serve which is gone (killed, so it could
// not clean up) left under base, killing what is left in them.
func sweep(base string) {
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "shoal-"))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "shoal-") || err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		dir := filepath.Join(base, e.Name())
		instances, _ := os.ReadDir(dir)
		for _, in := range instances {
			if in.IsDir() {
				g := &cgroup{dirs: map[string]string{"memory": filepath.Join(dir, in.Name())}}
				g.kill()
				g.remove()
			}
		}
		os.Remove(dir)
	}
}

// close removes serve's folders; the instances' must be gone.
func (fs *cgroupFS) close() {
	for _, d := range fs.parents {
		os.Remove(d)
	}
}

// cgroup is one instance's cgroup: a folder per hierarchy.
type cgroup struct {
	v2   bool
	dirs map[string]string // by controller; "" on v2
}

// create makes an instance's cgroup, named name, and bounds its tasks;
// limit sets the rest once its function is known.
func (fs *cgroupFS) create(name string) (*cgroup, error) {
	g := &cgroup{v2: fs.v2, dirs: map[string]string{}}
	for c, parent := range fs.parents {
		d := filepath.Join(parent, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			g.remove()
			return nil, fmt.Errorf("cgroup %s: %w", name, err)
		}
		g.dirs[c] = d
	}
	if err := g.set(setting{"pids", "pids.max", strconv.Itoa(PidsMax), true}); err != nil {
		g.remove()
		return nil, err
	}
	return g, nil
}

// limit sets the cgroup's memory (and no swap) to the function's, and its
// CPU weight in proportion.
func (g *cgroup) limit(memoryMB int) error {
	mem := strconv.FormatInt(int64(memoryMB+SlackMB)<<20, 10)
	set := []setting{
		{"memory", "memory.limit_in_bytes", mem, true},
		// Needs swap accounting; without swap there is none to limit.
		{"memory", "memory.memsw.limit_in_bytes", mem, false},
		{"memory", "memory.swappiness", "0", false},
		// 1024 (the default share) per GB.
		{"cpu", "cpu.shares", strconv.Itoa(max(2, memoryMB)), false},
	}
	if g.v2 {
		set = []setting{
			{"", "memory.max", mem, true},
			{"", "memory.swap.max", "0", false},
			// 100 (the default weight) per GB.
			{"", "cpu.weight", strconv.Itoa(max(1, min(10000, memoryMB*100/1024))), false},
		}
	}
	for _, s := range set {
		if err := g.set(s); err != nil {
			return err
		}
	}
	return nil
}

// set writes one setting; a failure matters only where it is required.
func (g *cgroup) set(s setting) error {
	if g.v2 {
		s.controller = ""
	}
	d, ok := g.dirs[s.controller]
	if !ok {
		return nil
	}
	if err := os.WriteFile(filepath.Join(d, s.file), []byte(s.value), 0); err != nil && s.required {
		return fmt.Errorf("cgroup: set %s: %w", s.file, err)
	}
	return nil
}

type setting struct {
	controller, file, value string
	required                bool
}

// add moves pid into the cgroup.
func (g *cgroup) add(pid int) error {
	for _, d := range g.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	return nil
}

// oomFile is the file whose "oom_kill N" line counts the instance's
// processes killed at its memory limit.
func (g *cgroup) oomFile() string {
	if g.v2 {
		return filepath.Join(g.dirs[""], "memory.events")
	}
	return filepath.Join(g.dirs["memory"], "memory.oom_control")
}

// oomKills is how many of the instance's processes were killed at its
// memory limit so far.
func (g *cgroup) oomKills() int {
	b, _ := os.ReadFile(g.oomFile())
	n, _ := ParseOOMKills(b)
	return n
}

// counts are what an instance's cgroup counted so far.
type counts struct {
	// CPU is the CPU time of all its processes; zero where not counted.
	CPU time.Duration
	// PeakMemory is the most memory it held, in bytes.
	PeakMemory int64
}

func (g *cgroup) counts() counts {
	var u counts
	if g.v2 {
		d := g.dirs[""]
		if usec, ok := field(filepath.Join(d, "cpu.stat"), "usage_usec"); ok {
			u.CPU = time.Duration(usec) * time.Microsecond
		}
		u.PeakMemory = readInt(filepath.Join(d, "memory.peak"))
	} else {
		if d, ok := g.dirs["cpuacct"]; ok {
			u.CPU = time.Duration(readInt(filepath.Join(d, "cpuacct.usage")))
		}
		u.PeakMemory = readInt(filepath.Join(g.dirs["memory"], "memory.max_usage_in_bytes"))
	}
	return u
}

// kill kills every process in the cgroup and waits until it is empty, at
// most a few seconds.
func (g *cgroup) kill() {
	if g.v2 {
		os.WriteFile(filepath.Join(g.dirs[""], "cgroup.kill"), []byte("1"), 0)
	}
	procs := filepath.Join(g.dirs["memory"], "cgroup.procs")
	if g.v2 {
		procs = filepath.Join(g.dirs[""], "cgroup.procs")
	}
	for i := 0; i < 300; i++ {
		b, err := os.ReadFile(procs)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			return
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// remove removes the cgroup's folders; they must hold no process.
func (g *cgroup) remove() {
	for _, d := range g.dirs {
		// rmdir may see the last task still leaving: retry briefly.
		for i := 0; i < 50; i++ {
			if err := os.Remove(d); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// ParseOOMKills returns the count in an "oom_kill N" line of a cgroup's
// memory.events (v2) or memory.oom_control (v1).
func ParseOOMKills(b []byte) (int, bool) {
	n, ok := fieldOf(b, "oom_kill")
	return int(n), ok
}

// ownCgroups reads serve's own cgroup paths: by controller on v1, "" on v2.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("own cgroup: %w", err)
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = parts[2]
		}
	}
	return own, nil
}

// cgroup2Mount is where the unified hierarchy is mounted, or "".
func cgroup2Mount() string {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st syscall.Statfs_t
		if syscall.Statfs(p, &st) == nil && st.Type == 0x63677270 { // CGROUP2_SUPER_MAGIC
			return p
		}
	}
	return ""
}

func isCgroupMount(p string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(p, &st) == nil && st.Type == 0x27e0eb // CGROUP_SUPER_MAGIC
}

func hasFields(s string, want ...string) bool {
	have := strings.Fields(s)
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// field reads the value of a "key N" line of a flat-keyed cgroup file.
func field(path, key string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	return fieldOf(b, key)
}

func fieldOf(b []byte, key string) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
