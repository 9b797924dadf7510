package runtime

import (
	"os"
	"os/signal"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reapOrphans reaps the processes that end up the runtime's children
// without being its own: as pid 1 of its pid namespace it inherits what
// node's children leave behind (a background job of a shell node ran),
// and their zombies would hold the instance's task slots until it stops.
// node, its own child, is left to its Wait: finding node's zombie first,
// it stops until the next SIGCHLD (node exiting ends the instance anyway).
// It returns when done is closed.
func reapOrphans(node int, done <-chan struct{}) {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	for {
		select {
		case <-done:
			return
		case <-ch:
		}
		for {
			var info unix.Siginfo
			// Look without reaping: node's zombie is its Wait's.
			if unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil) != nil {
				break
			}
			pid := siginfoPid(&info)
			if pid == 0 || pid == node {
				break
			}
			var ws unix.WaitStatus
			if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil {
				break
			}
		}
	}
}

// siginfoPid is si_pid: the first field of the union after signo, errno
// and code, which is aligned to a pointer (offset 16 on 64-bit Linux, 12
// on 32-bit).
func siginfoPid(info *unix.Siginfo) int {
	off := 3 * unsafe.Sizeof(int32(0))
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}
