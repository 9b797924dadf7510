package runtime

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"time"
)

// Stats is a sample of the instance's state.
type Stats struct {
	// CPU is the CPU time (user + system) the runtime and node used so
	// far, including children node reaped.
	CPU time.Duration
	// RSS is node's resident memory in bytes; 0 once node exited.
	RSS int64
	// InFlight is how many invocations are being served.
	InFlight int
	// Waited are the invocations whose waitUntil work ended since the
	// last Stats, after their responses had.
	Waited []Waited
}

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
	st := Stats{InFlight: int(s.inflight.Load())}
	if cpu, _, err := procStat(os.Getpid()); err == nil {
		st.CPU += cpu
	}
	select {
	case <-s.exited:
		// node's CPU is in the runtime's reaped children now.
		if ps := s.cmd.ProcessState; ps != nil {
			st.CPU += ps.UserTime() + ps.SystemTime()
		}
	default:
		if cpu, rss, err := procStat(s.cmd.Process.Pid); err == nil {
			st.CPU += cpu
			st.RSS = rss
		}
	}
	s.mu.Lock()
	st.Waited, s.waited = s.waited, nil
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

// procStat reads a process's CPU time (its own and its reaped children's,
// user + system) and resident memory from /proc/PID/stat.
func procStat(pid int) (cpu time.Duration, rss int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
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
