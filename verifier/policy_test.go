package verifier_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sumkeep/sumkeep/verifier"
)

func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// TestPolicyFromEnv checks where GONOSUMDB, GOPRIVATE and GOSUMDB come
// from: the environment when set (and not empty, as the go command reads
// it), else the go command's values; GONOSUMDB defaulting to GOPRIVATE.
func TestPolicyFromEnv(t *testing.T) {
	goEnv := func(vals map[string]string) verifier.GoEnv {
		return func(ctx context.Context, names ...string) (map[string]string, error) { return vals, nil }
	}
	for _, tt := range []struct {
		name  string
		env   map[string]string
		goEnv verifier.GoEnv
		want  verifier.Policy
	}{
		{"Nothing", nil, nil, verifier.Policy{From: "GOPRIVATE"}},
		{"GONOSUMDB", map[string]string{"GONOSUMDB": "a.example"}, nil, verifier.Policy{NoSumDB: "a.example", From: "GONOSUMDB"}},
		{"GOPRIVATE", map[string]string{"GOPRIVATE": "p.example"}, nil, verifier.Policy{NoSumDB: "p.example", From: "GOPRIVATE"}},
		{"GONOSUMDBWins", map[string]string{"GOPRIVATE": "p.example", "GONOSUMDB": "a.example"}, nil, verifier.Policy{NoSumDB: "a.example", From: "GONOSUMDB"}},
		{"EmptyIsUnset", map[string]string{"GOPRIVATE": "p.example", "GONOSUMDB": ""}, nil, verifier.Policy{NoSumDB: "p.example", From: "GOPRIVATE"}},
		{"Off", map[string]string{"GOSUMDB": "off"}, nil, verifier.Policy{From: "GOPRIVATE", SumDBOff: true}},
		{"FromGoEnv", nil, goEnv(map[string]string{"GONOSUMDB": "g.example", "GOPRIVATE": "", "GOSUMDB": "off"}),
			verifier.Policy{NoSumDB: "g.example", From: "GONOSUMDB", SumDBOff: true}},
		{"GoEnvDefaultsToGOPRIVATE", nil, goEnv(map[string]string{"GONOSUMDB": "p.example", "GOPRIVATE": "p.example", "GOSUMDB": "sum.golang.org"}),
			verifier.Policy{NoSumDB: "p.example", From: "GOPRIVATE"}},
		{"EnvOverGoEnv", map[string]string{"GONOSUMDB": "e.example", "GOSUMDB": "sum.golang.org"}, goEnv(map[string]string{"GONOSUMDB": "g.example", "GOSUMDB": "off"}),
			verifier.Policy{NoSumDB: "e.example", From: "GONOSUMDB"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verifier.PolicyFromEnv(context.Background(), mapEnv(tt.env), tt.goEnv)
			if err != nil || got != tt.want {
				t.Errorf("PolicyFromEnv = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}

	// A failing go env: the environment's policy and the error.
	failing := func(context.Context, ...string) (map[string]string, error) { return nil, errors.New("no go") }
	got, err := verifier.PolicyFromEnv(context.Background(), mapEnv(map[string]string{"GOPRIVATE": "p.example"}), failing)
	if err == nil || got.NoSumDB != "p.example" {
		t.Errorf("with go env failing: %+v, %v", got, err)
	}
}

// TestGoCommandEnv reads the policy from a go env file through the real go
// command, as `go env -w` writes it.
func TestGoCommandEnv(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	ctx := context.Background()
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	write := func(s string) {
		if err := os.WriteFile(envFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name, file string
		env        map[string]string
		want       verifier.Policy
	}{
		{"FileGONOSUMDB", "GONOSUMDB=corp.example.com/*\nGOPRIVATE=private.example\n", nil,
			verifier.Policy{NoSumDB: "corp.example.com/*", From: "GONOSUMDB"}},
		{"FileGOPRIVATE", "GOPRIVATE=private.example\n", nil,
			verifier.Policy{NoSumDB: "private.example", From: "GOPRIVATE"}},
		{"FileOff", "GOSUMDB=off\n", nil, verifier.Policy{From: "GOPRIVATE", SumDBOff: true}},
		{"EnvGOPRIVATEFileGONOSUMDB", "GONOSUMDB=file.example\n", map[string]string{"GOPRIVATE": "env.example"},
			verifier.Policy{NoSumDB: "file.example", From: "GONOSUMDB"}},
		{"EnvWins", "GONOSUMDB=file.example\nGOSUMDB=off\n", map[string]string{"GONOSUMDB": "env.example", "GOSUMDB": "sum.golang.org"},
			verifier.Policy{NoSumDB: "env.example", From: "GONOSUMDB"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			write(tt.file)
			env := map[string]string{"GOENV": envFile}
			for k, v := range tt.env {
				env[k] = v
			}
			got, err := verifier.PolicyFromEnv(ctx, mapEnv(env), verifier.GoCommandEnv(mapEnv(env)))
			if err != nil || got != tt.want {
				t.Errorf("policy = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestGoEnvFiles reads the go command's env files without running it, and
// must agree with the real go command (`go env`) in every case: the user's
// file found through GOENV, XDG_CONFIG_HOME or HOME, GOENV=off, a
// toolchain whose go.env turns the checksum database off (a distribution
// may ship one), the user's file over go.env, comments and junk lines.
func TestGoEnvFiles(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	ctx := context.Background()
	dir := t.TempDir()
	file := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A toolchain of our own: pkg/tool makes it a GOROOT for the go
	// command, and its go.env says GOSUMDB=off.
	offRoot := filepath.Join(dir, "offroot")
	if err := os.MkdirAll(filepath.Join(offRoot, "pkg", "tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	file("offroot/go.env", "# a distribution's defaults\nGOPROXY=direct\nGOSUMDB=off\n")
	userFile := file("user/env", "# junk the go command ignores\n\nlowercase=1\nnoequals\nGOPRIVATE=private.example\nGONOSUMDB=corp.example/*\nGONOSUMDB=later.example\n")
	file("xdg/go/env", "GOPRIVATE=xdg.example\n")
	file("home/.config/go/env", "GOPRIVATE=home.example\nGOSUMDB=off\n")
	file("sumdbon/env", "GOSUMDB=sum.golang.org\n")
	// The go command keeps telemetry counters in the config directory it
	// is given, and may still be writing them, from a child of its own,
	// when the test removes dir; with telemetry off it writes nothing.
	file("xdg/go/telemetry/mode", "off")
	file("home/.config/go/telemetry/mode", "off")

	for _, tt := range []struct {
		name string
		env  map[string]string
		want verifier.Policy
	}{
		{"GOENV", map[string]string{"GOENV": userFile}, verifier.Policy{NoSumDB: "later.example", From: "GONOSUMDB"}},
		{"GOENVOff", map[string]string{"GOENV": "off", "HOME": filepath.Join(dir, "home")}, verifier.Policy{From: "GOPRIVATE"}},
		{"XDG", map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "xdg"), "HOME": filepath.Join(dir, "home")},
			verifier.Policy{NoSumDB: "xdg.example", From: "GOPRIVATE"}},
		{"HOME", map[string]string{"XDG_CONFIG_HOME": "", "HOME": filepath.Join(dir, "home")},
			verifier.Policy{NoSumDB: "home.example", From: "GOPRIVATE", SumDBOff: true}},
		{"ToolchainOff", map[string]string{"GOENV": userFile, "GOROOT": offRoot},
			verifier.Policy{NoSumDB: "later.example", From: "GONOSUMDB", SumDBOff: true}},
		{"UserOverToolchain", map[string]string{"GOENV": filepath.Join(dir, "sumdbon", "env"), "GOROOT": offRoot},
			verifier.Policy{From: "GOPRIVATE"}},
		{"NoFile", map[string]string{"GOENV": filepath.Join(dir, "missing")}, verifier.Policy{From: "GOPRIVATE"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := mapEnv(tt.env)
			var noFallback verifier.GoEnv = func(context.Context, ...string) (map[string]string, error) {
				return nil, errors.New("fell back to go env")
			}
			files, err := verifier.PolicyFromEnv(ctx, env, verifier.GoEnvFiles(env, noFallback))
			if err != nil || files != tt.want {
				t.Errorf("from the files: %+v, %v; want %+v", files, err, tt.want)
			}
			goCmd, err := verifier.PolicyFromEnv(ctx, env, verifier.GoCommandEnv(env))
			if err != nil || goCmd != tt.want {
				t.Errorf("from go env: %+v, %v; want %+v", goCmd, err, tt.want)
			}
		})
	}
}
