package modproxy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testModules are two tiny modules; the second has upper-case letters so the
// escaped layout ("!upper") is exercised.
var testModules = []Module{
	{
		Path:    "example.com/hello",
		Version: "v1.0.0",
		Files: map[string]string{
			"go.mod":   "module example.com/hello\n\ngo 1.21\n",
			"hello.go": "package hello\n\nfunc Hello() string { return \"hello\" }\n",
		},
	},
	{
		Path:    "example.com/Upper/world",
		Version: "v0.2.1-beta.1",
		Files: map[string]string{
			"go.mod":     "module example.com/Upper/world\n\ngo 1.21\n",
			"world.go":   "package world\n\nconst World = \"world\"\n",
			"LICENSE":    "Public domain.\n",
			"sub/sub.go": "package sub\n",
		},
	},
}

func TestBuildLayout(t *testing.T) {
	dir := t.TempDir()
	sums, err := Build(dir, testModules)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 {
		t.Fatalf("got %d sums, want 2", len(sums))
	}
	for _, f := range []string{
		"example.com/hello/@v/list",
		"example.com/hello/@v/v1.0.0.info",
		"example.com/hello/@v/v1.0.0.mod",
		"example.com/hello/@v/v1.0.0.zip",
		"example.com/!upper/world/@v/v0.2.1-beta.1.zip",
	} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	// A second version of the same path extends @v/list.
	more := Module{Path: "example.com/hello", Version: "v1.1.0", Files: map[string]string{"go.mod": "module example.com/hello\n"}}
	if _, err := Build(dir, []Module{more}); err != nil {
		t.Fatal(err)
	}
	list, _ := os.ReadFile(filepath.Join(dir, "example.com/hello/@v/list"))
	if string(list) != "v1.0.0\nv1.1.0\n" {
		t.Errorf("list = %q", list)
	}
	s := sums[0]
	want := "example.com/hello v1.0.0 " + s.ZipHash + "\nexample.com/hello v1.0.0/go.mod " + s.ModHash + "\n"
	if s.Lines() != want {
		t.Errorf("Lines() = %q, want %q", s.Lines(), want)
	}
	for _, h := range []string{s.ZipHash, s.ModHash} {
		if !strings.HasPrefix(h, "h1:") || len(h) != 47 {
			t.Errorf("malformed hash %q", h)
		}
	}
	if _, err := Build(dir, []Module{{Path: "example.com/x", Version: "v1.0.0", Files: map[string]string{"a.go": "package a\n"}}}); err == nil {
		t.Error("Build without go.mod succeeded")
	}
	if _, err := Build(dir, []Module{{Path: "example.com/x", Version: "1.0", Files: map[string]string{"go.mod": "module example.com/x\n"}}}); err == nil {
		t.Error("Build with bad version succeeded")
	}
}

// TestGoModDownload runs the real go command against the file:// proxy and
// checks that the hashes it computes are the ones Build returned.
func TestGoModDownload(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	tmp := t.TempDir()
	proxyDir := filepath.Join(tmp, "proxy")
	sums, err := Build(proxyDir, testModules)
	if err != nil {
		t.Fatal(err)
	}
	gopath := filepath.Join(tmp, "gopath")
	t.Cleanup(func() {
		if err := CleanModCache(gopath); err != nil {
			t.Error(err)
		}
	})
	work := filepath.Join(tmp, "work")
	if err := os.MkdirAll(work, 0o777); err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/main\n\ngo 1.21\n\nrequire (\n"
	for _, m := range testModules {
		gomod += "\t" + m.Path + " " + m.Version + "\n"
	}
	gomod += ")\n"
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod), 0o666); err != nil {
		t.Fatal(err)
	}
	env := GoEnv(gopath, GOPROXY(proxyDir), "GOSUMDB=", "GONOSUMDB=example.com")

	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = work
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return out
	}

	for _, s := range sums {
		out := run("mod", "download", "-json", s.Path+"@"+s.Version)
		var got struct {
			Path, Version, Sum, GoModSum, Error string
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("decoding %s: %v", out, err)
		}
		if got.Error != "" {
			t.Fatalf("%s@%s: %s", s.Path, s.Version, got.Error)
		}
		if got.Sum != s.ZipHash || got.GoModSum != s.ModHash {
			t.Errorf("%s@%s: go command says %s %s, Build says %s %s", s.Path, s.Version, got.Sum, got.GoModSum, s.ZipHash, s.ModHash)
		}
	}

	// The go.sum the go command writes has exactly our lines.
	run("mod", "download", "all")
	gosum, err := os.ReadFile(filepath.Join(work, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sums {
		if !strings.Contains(string(gosum), s.Lines()) {
			t.Errorf("go.sum lacks\n%s\ngo.sum:\n%s", s.Lines(), gosum)
		}
	}
}
