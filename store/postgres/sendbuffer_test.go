package postgres

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestWidenSendBuffer: a COPY's connection to a database on this machine
// gets a send buffer large enough for a batch (as far as the kernel's cap
// allows); one to a database elsewhere keeps the kernel's own tuning.
func TestWidenSendBuffer(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/core/wmem_max")
	if err != nil {
		t.Skipf("no kernel cap on socket send buffers to read: %v", err)
	}
	wmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "s")
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				if c, err := ln.Accept(); err == nil {
					defer c.Close()
					c.Read(make([]byte, 1))
				}
			}()
			c, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := sendBuffer(t, c)
			widenSendBuffer(c)
			after := sendBuffer(t, c)
			// The kernel doubles what it is asked for, up to twice its cap.
			want := 2 * min(copySendBuffer, wmemMax)
			if after < want {
				t.Errorf("send buffer %d bytes after widening (%d before), want %d (wmem_max %d)", after, before, want, wmemMax)
			}
			if wmemMax > before && after <= before {
				t.Errorf("send buffer did not grow: %d bytes before and after, with wmem_max %d", before, wmemMax)
			}
		})
	}
	t.Run("elsewhere", func(t *testing.T) {
		c := &remoteConn{addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5432}}
		widenSendBuffer(c)
		if c.set {
			t.Error("widened the send buffer of a connection to another machine")
		}
	})
}

func sendBuffer(t *testing.T, c net.Conn) int {
	t.Helper()
	sc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var serr error
	if err := sc.Control(func(fd uintptr) {
		n, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return n
}

// remoteConn is a connection to another machine, as far as
// widenSendBuffer can tell, that records whether its buffer was set.
type remoteConn struct {
	net.Conn
	addr net.Addr
	set  bool
}

func (c *remoteConn) RemoteAddr() net.Addr { return c.addr }

func (c *remoteConn) SetWriteBuffer(int) error {
	c.set = true
	return nil
}
