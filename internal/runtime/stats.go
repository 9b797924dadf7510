package runtime

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"time"
)

// Stats is a sample of the instance's state.
type Stats struct {
	// CPU is the CPU time (user + system) the runtime and node used so
	// far, including children node reaped; NodeCPU is node's share.
	CPU, NodeCPU time.Duration
	// RSS is node's resident memory in bytes; 0 once node exited.
	RSS int64
	// InFlight is how many invocations node is serving, as its loops
	// last reported.
	InFlight int
	// Loops is how many event loops node serves on.
	Loops int
	// HostIdle is how many of the host's CPUs were idle on average since
	// the last Stats (0 at the first): room for another loop to compute.
	HostIdle float64
	// Loop is how loaded node's busiest event loop is (the highest of each
	// figure among the loops); LoopKnown says there is a report to judge
	// it by: not yet from a new node, and not from a loop whose last
	// report is of the idle time an invocation just ended.
	Loop      Loop
	LoopKnown bool
	// Waited are the invocations whose waitUntil work ended since the
	// last Stats, after their responses had.
	Waited []Waited
}

// Loop is the load of node's event loop over the interval of its last
// report: 100 ms, or a second while it idles.
type Loop struct {
	// InFlight is how many invocations it was serving (whose responses
	// had not finished).
	InFlight int
	// Utilization is the share of the time the loop was busy, 0 to 1.
	Utilization float64
	// DelayMean and DelayMax are how late a 10 ms timer ran: how long
	// a callback ready to run waited for the loop.
	DelayMean, DelayMax time.Duration
}

// loadEvery is how often a loop at work reports its load; a loop that
// idles reports once a second, and at once when an invocation begins
// (the bootstrap's reportLoad). Each report says when the next comes.
const loadEvery = 100 * time.Millisecond

// loopLate is how much later than node said a loop's next load report
// may come before the loop counts as blocked: a report comes on time
// unless user code holds the loop.
const loopLate = 150 * time.Millisecond

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// Waited is an invocation whose work went on past its response: from when
// the response finished to when its last waitUntil promise settled.
type Waited struct {
	ID       string
	From, To time.Time
}

// maxWaited bounds the waited records kept between two samples.
const maxWaited = 10_000

// Stats samples the instance and takes the waited records gathered since
// the last call.
func (s *Supervisor) Stats() Stats {
	var st Stats
	s.procMu.Lock()
	select {
	case <-s.exited:
		s.proc.node.close()
		if ps := s.cmd.ProcessState; ps != nil {
			st.NodeCPU = ps.UserTime() + ps.SystemTime()
		}
	default:
		if cpu, rss, err := readProcStat(&s.proc.node); err == nil {
			st.NodeCPU, st.RSS = cpu, rss
		}
	}
	st.CPU = st.NodeCPU
	if cpu, _, err := readProcStat(&s.proc.self); err == nil {
		// Once node is reaped its CPU is in this process's children's
		// figure too, which readProcStat adds: count it once.
		st.CPU = cpu
		select {
		case <-s.exited:
		default:
			st.CPU += st.NodeCPU
		}
	}
	now := time.Now()
	idle, idleErr := readHostIdleTime(&s.proc.host)
	s.procMu.Unlock()
	s.mu.Lock()
	if idleErr == nil {
		if !s.idleAt.IsZero() && now.After(s.idleAt) {
			st.HostIdle = max(0, float64(idle-s.idle)/float64(now.Sub(s.idleAt)))
		}
		s.idle, s.idleAt = idle, now
	}
	st.Waited, s.waited = s.waited, nil
	for _, l := range s.loops {
		if l == nil {
			continue
		}
		st.Loops++
		if l.loadAt.IsZero() {
			continue
		}
		load := l.load
		st.InFlight += load.InFlight
		if age := now.Sub(l.loadAt); age > l.next+loopLate {
			// Code holds the loop (an idle loop reports on time): it is
			// as busy as it gets, and what waits for it has waited this
			// long already.
			load = Loop{Utilization: 1, DelayMean: age, DelayMax: age}
		} else if l.woke {
			// A loop free through the idle time that just ended says
			// nothing of how it does with the work that ended it (judged
			// so, a burst that found the instance full grew its limit
			// while the burst held the loop).
			continue
		}
		st.LoopKnown = true
		st.Loop.Utilization = max(st.Loop.Utilization, load.Utilization)
		st.Loop.DelayMean = max(st.Loop.DelayMean, load.DelayMean)
		st.Loop.DelayMax = max(st.Loop.DelayMax, load.DelayMax)
	}
	s.mu.Unlock()
	return st
}

func (s *Supervisor) addWaited(w Waited) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waited) < maxWaited {
		s.waited = append(s.waited, w)
	}
}

// Kernel units of /proc/PID/stat. USER_HZ is 100 on every Linux ABI Go
// supports, and the page size is the runtime's.
const clockTick = time.Second / 100

var pageSize = int64(os.Getpagesize())

// procFiles are the /proc files Stats reads, kept open: opening three
// files every 100 ms was a fifth of an idle instance's runtime CPU (0.60%
// of a CPU against 0.47%, side by side).
type procFiles struct {
	node, self, host procFile
}

// procFile is a /proc file kept open and read again from its start, which
// /proc regenerates at each read.
type procFile struct {
	path string
	f    *os.File
	buf  []byte
}

// read returns the file's start, up to len(buf) bytes: enough for the
// stat lines read here.
func (pf *procFile) read() ([]byte, error) {
	if pf.f == nil {
		f, err := os.Open(pf.path)
		if err != nil {
			return nil, err
		}
		pf.f = f
		if pf.buf == nil {
			pf.buf = make([]byte, 1024)
		}
	}
	n, err := pf.f.ReadAt(pf.buf, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return pf.buf[:n], nil
}

func (pf *procFile) close() {
	if pf.f != nil {
		pf.f.Close()
		pf.f = nil
	}
}

func (p *procFiles) close() {
	p.node.close()
	p.self.close()
	p.host.close()
}

// readHostIdleTime reads how long the host's CPUs were idle (or waiting
// for I/O) since boot, added up over the CPUs, from the first line of
// /proc/stat (pf).
func readHostIdleTime(pf *procFile) (time.Duration, error) {
	b, err := pf.read()
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	// cpu user nice system idle iowait ...
	if len(fields) < 6 || string(fields[0]) != "cpu" {
		return 0, errors.New("runtime: malformed /proc/stat")
	}
	var ticks int64
	for _, f := range fields[4:6] {
		v, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * clockTick, nil
}

// readProcStat reads a process's CPU time (its own and its reaped
// children's, user + system) and resident memory from its /proc/PID/stat
// (pf).
func readProcStat(pf *procFile) (cpu time.Duration, rss int64, err error) {
	b, err := pf.read()
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields to count start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("runtime: malformed /proc stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): utime..cstime are fields 14..17, rss is 24.
	if len(f) < 22 {
		return 0, 0, errors.New("runtime: short /proc stat")
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} {
		n, err := strconv.ParseInt(string(f[k]), 10, 64)
		if err != nil {
			return 0, 0, err
		}
		ticks += n
	}
	pages, err := strconv.ParseInt(string(f[21]), 10, 64)
	if err != nil {
		return 0, 0, err
	}
	return time.Duration(ticks) * clockTick, pages * pageSize, nil
}
