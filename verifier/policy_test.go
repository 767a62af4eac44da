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
