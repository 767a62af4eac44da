package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// toolchainModule is the module the go command downloads toolchains as. It
// requires checksum database lookups for it even when GONOSUMDB matches or
// GOSUMDB=off, since downloaded toolchains cannot be listed in go.sum.
const toolchainModule = "golang.org/toolchain"

// Policy decides which modules are skipped, as the go command decides which
// modules it looks up in the checksum database (cmd/go's useSumDB).
type Policy struct {
	// NoSumDB is the effective GONOSUMDB: comma-separated path prefix
	// patterns (module.MatchPrefixPatterns). The go command uses GOPRIVATE
	// when GONOSUMDB is unset.
	NoSumDB string
	// From names the variable NoSumDB came from, "GONOSUMDB" or
	// "GOPRIVATE", for messages.
	From string
	// SumDBOff reports GOSUMDB=off: the go command consults no checksum
	// database (but for golang.org/toolchain).
	SumDBOff bool
}

// skip reports whether lines for path are skipped, with a kind and message.
//
// Unlike the go command, which also skips golang.org/toolchain when GOPROXY
// is a single file:// URL (testing a distribution) or when it runs inside
// the public module proxy, the verifier always checks toolchain lines: those
// exceptions are about downloading, and a verifier has no reason to trust a
// toolchain hash less.
func (p Policy) skip(path string) (kind, msg string, ok bool) {
	if path == toolchainModule {
		return "", "", false
	}
	if p.SumDBOff {
		return KindGOSUMDBOff, "skipped: GOSUMDB=off", true
	}
	if module.MatchPrefixPatterns(p.NoSumDB, path) {
		from := p.From
		if from == "" {
			from = "GONOSUMDB"
		}
		return KindGONOSUMDB, fmt.Sprintf("skipped: matches %s=%s", from, p.NoSumDB), true
	}
	return "", "", false
}

// A GoEnv returns the go command's values of the named variables (as
// `go env` prints them: the environment, else the go env file, else the
// default).
type GoEnv func(ctx context.Context, names ...string) (map[string]string, error)

// PolicyFromEnv returns the policy the go command would apply: GONOSUMDB,
// GOPRIVATE and GOSUMDB come from getenv where set to a non-empty value, and
// otherwise from goEnv (nil: only the environment). An error from goEnv is
// returned together with the policy the environment alone gives.
func PolicyFromEnv(ctx context.Context, getenv func(string) (string, bool), goEnv GoEnv) (Policy, error) {
	names := []string{"GONOSUMDB", "GOPRIVATE", "GOSUMDB"}
	vals := make(map[string]string)
	var missing []string
	for _, n := range names {
		// The go command treats an empty variable as unset (cfg.Getenv).
		if v, ok := getenv(n); ok && v != "" {
			vals[n] = v
		} else {
			missing = append(missing, n)
		}
	}
	var err error
	if len(missing) > 0 && goEnv != nil {
		var fromGo map[string]string
		fromGo, err = goEnv(ctx, names...)
		if err == nil {
			for _, n := range missing {
				if v := fromGo[n]; v != "" {
					vals[n] = v
				}
			}
		}
	}
	// `go env GONOSUMDB` prints GOPRIVATE when GONOSUMDB is unset, so a
	// value from go env cannot tell the two apart; say GONOSUMDB unless it
	// is exactly GOPRIVATE.
	p := Policy{NoSumDB: vals["GONOSUMDB"], From: "GONOSUMDB", SumDBOff: vals["GOSUMDB"] == "off"}
	if p.NoSumDB == "" || p.NoSumDB == vals["GOPRIVATE"] {
		p.NoSumDB, p.From = vals["GOPRIVATE"], "GOPRIVATE"
	}
	return p, err
}

// GoCommandEnv returns a GoEnv that runs `go env -json`, or nil when the go
// command is not installed. The command runs in a temporary directory (so
// that no go.mod or go.work around the caller matters) with
// GOTOOLCHAIN=local (so that it never downloads a toolchain), in the
// process environment where getenv overrides GONOSUMDB, GOPRIVATE, GOSUMDB,
// GOENV, GOPATH, GOROOT, HOME and XDG_CONFIG_HOME (set or unset).
func GoCommandEnv(getenv func(string) (string, bool)) GoEnv {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil
	}
	return func(ctx context.Context, names ...string) (map[string]string, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		override := []string{"GONOSUMDB", "GOPRIVATE", "GOSUMDB", "GOENV", "GOPATH", "GOROOT", "HOME", "XDG_CONFIG_HOME", "GOTOOLCHAIN"}
		var env []string
		for _, kv := range os.Environ() {
			name, _, _ := strings.Cut(kv, "=")
			overridden := false
			for _, o := range override {
				overridden = overridden || name == o
			}
			if !overridden {
				env = append(env, kv)
			}
		}
		for _, o := range override[:len(override)-1] {
			if v, ok := getenv(o); ok {
				env = append(env, o+"="+v)
			}
		}
		env = append(env, "GOTOOLCHAIN=local")
		cmd := exec.CommandContext(ctx, goCmd, append([]string{"env", "-json"}, names...)...)
		cmd.Env = env
		cmd.Dir = os.TempDir()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go env: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		vals := make(map[string]string)
		if err := json.Unmarshal(out, &vals); err != nil {
			return nil, fmt.Errorf("go env: parsing its output: %v", err)
		}
		return vals, nil
	}
}
