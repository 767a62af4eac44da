package trilliantest

import "syscall"

// sysProcAttr makes a Trillian process die with the test process that
// started it, so that a test killed by its timeout leaves none behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
