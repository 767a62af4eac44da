package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// TestSlowClients: clients that send a request slowly, or never read their
// answers, are disconnected; oversized headers are refused; the server
// keeps serving others. The limits are small here so that the test is
// quick; it asserts only that each connection is closed before a generous
// deadline.
func TestSlowClients(t *testing.T) {
	st := openSQLite(t)
	l := newTestLog(t, "sum.example.test")
	l.grow(t, 600)
	l.sync(t, st, 0, 600, 600, true)
	srv := New(Config{Store: st, Log: l.name})
	hs := srv.HTTPServer(HTTPLimits{ReadHeaderTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: 2 * time.Second})

	var mu sync.Mutex
	closed := make(map[string]chan struct{}) // client address -> closed when the server closed its connection
	closedCh := func(addr string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		ch := closed[addr]
		if ch == nil {
			ch = make(chan struct{})
			closed[addr] = ch
		}
		return ch
	}
	hs.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			close(closedCh(c.RemoteAddr().String()))
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	addr := ln.Addr().String()

	// dial connects with a small receive buffer, so that answers that are
	// not read fill it soon.
	dial := func() net.Conn {
		t.Helper()
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	waitClosed := func(what string, c net.Conn) {
		t.Helper()
		select {
		case <-closedCh(c.LocalAddr().String()):
		case <-time.After(time.Minute):
			t.Errorf("%s: the server still holds the connection after a minute", what)
		}
	}
	// trickle writes the bytes of s one by one, slowly, until the
	// connection fails or stop is closed; then more bytes of fill forever.
	trickle := func(c net.Conn, s, fill string, stop <-chan struct{}) {
		go func() {
			for i := 0; ; i++ {
				b := fill
				if i < len(s) {
					b = s[i : i+1]
				}
				if _, err := io.WriteString(c, b); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	stop := make(chan struct{})
	defer close(stop)

	// A body sent a byte at a time, after the headers.
	slowBody := dial()
	io.WriteString(slowBody, "POST /latest HTTP/1.1\r\nHost: sumkeep\r\nContent-Length: 100000\r\n\r\n")
	trickle(slowBody, "", "x", stop)
	// A header sent a byte at a time.
	slowHeader := dial()
	trickle(slowHeader, "GET /latest HTTP/1.1\r\nHost: sumkeep\r\n", "X-Slow: y\r\n", stop)
	// Requests for data tiles, pipelined, whose answers are never read.
	noRead := dial()
	go func() {
		req := "GET /" + tlog.Tile{H: 8, L: -1, N: 0, W: 256}.Path() + " HTTP/1.1\r\nHost: sumkeep\r\n\r\n"
		for range 100000 {
			if _, err := io.WriteString(noRead, req); err != nil {
				return
			}
		}
	}()
	// Headers over the cap.
	big := dial()
	fmt.Fprintf(big, "GET /latest HTTP/1.1\r\nHost: sumkeep\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 64<<10))
	big.SetReadDeadline(time.Now().Add(time.Minute))
	if resp, err := http.ReadResponse(bufio.NewReader(big), nil); err != nil {
		t.Errorf("oversized headers: %v", err)
	} else if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: %d, want 431", resp.StatusCode)
	}

	waitClosed("a body sent a byte at a time", slowBody)
	waitClosed("headers sent a byte at a time", slowHeader)
	waitClosed("answers never read", noRead)

	// Others are still served.
	hc := &http.Client{Timeout: time.Minute}
	resp, err := hc.Get("http://" + addr + "/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/latest: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
