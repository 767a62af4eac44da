package main

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// console is standard error as a command writes it. Log lines, a seed's
// progress and the command's own messages come from several goroutines,
// so each write goes out whole and in turn. On a terminal, a progress bar
// drawn in place on the last line stays there: a line written meanwhile
// takes the bar's place, and the bar is drawn again below it.
type console struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
	bar string // the bar on the last line, not ended by a newline; "" if none
}

// clearLine returns the cursor to the start of the line and clears it.
const clearLine = "\r\x1b[K"

func newConsole(w io.Writer) *console {
	return &console{w: w, tty: isTerminal(w)}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar == "" {
		return c.w.Write(p)
	}
	buf := make([]byte, 0, len(clearLine)+len(p)+len(c.bar))
	buf = append(append(buf, clearLine...), p...)
	if bytes.HasSuffix(p, []byte("\n")) {
		buf = append(buf, c.bar...)
	} else {
		c.bar = "" // p's line is open now: the bar comes back with the next draw
	}
	if _, err := c.w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// drawBar draws bar in place of the last line. Only for a terminal.
func (c *console) drawBar(bar string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bar = bar
	io.WriteString(c.w, clearLine+bar)
}

// endBar ends the bar's line, leaving the bar as last drawn.
func (c *console) endBar() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bar != "" {
		io.WriteString(c.w, "\n")
		c.bar = ""
	}
}
