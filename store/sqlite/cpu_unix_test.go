//go:build unix

package sqlite_test

import (
	"syscall"
	"time"
)

// cpuTime is the processor time the process has used, user and system: on a
// shared machine, a steadier measure of cost than throughput.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
