package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestConsoleBar checks that a line written while a progress bar is drawn
// takes the bar's place, with the bar drawn again below it, and that the
// bar's line is ended when it is done.
func TestConsoleBar(t *testing.T) {
	var buf bytes.Buffer
	c := &console{w: &buf, tty: true}
	c.drawBar("[=  ] 1/3")
	fmt.Fprintf(c, "level=WARN msg=%q\n", "upstream down")
	c.drawBar("[== ] 2/3")
	fmt.Fprint(c, "no newline")
	c.drawBar("[===] 3/3")
	c.endBar()
	fmt.Fprintln(c, "seeded")
	want := clearLine + "[=  ] 1/3" +
		clearLine + "level=WARN msg=\"upstream down\"\n" + "[=  ] 1/3" +
		clearLine + "[== ] 2/3" +
		clearLine + "no newline" +
		clearLine + "[===] 3/3" + "\n" +
		"seeded\n"
	if got := buf.String(); got != want {
		t.Errorf("console wrote\n%q\nwant\n%q", got, want)
	}
}

// TestConsoleConcurrent writes lines from many goroutines at once, as a
// seed's log lines and progress do: each must come out whole. Under the
// race detector, a console that does not serialize its writes fails at
// once; without it, lines come out torn or lost.
func TestConsoleConcurrent(t *testing.T) {
	var buf bytes.Buffer
	c := &console{w: &buf}
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(c, "writer %d line %d %s\n", w, i, strings.Repeat("x", 100))
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	seen := make(map[string]bool)
	for _, l := range got {
		var w, i int
		var x string
		if n, err := fmt.Sscanf(l, "writer %d line %d %s", &w, &i, &x); n != 3 || err != nil || x != strings.Repeat("x", 100) || seen[l] {
			t.Fatalf("torn or repeated line %q", l)
		}
		seen[l] = true
	}
}
