//go:build !linux

package trilliantest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
