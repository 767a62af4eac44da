package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/sumkeep/sumkeep/internal/helmtest"
)

// The deploy kit (deploy/) is checked here as far as this machine allows:
// no container engine runs on it, so the image is not built and compose is
// not started. What is checked: the Dockerfile's build step itself (a
// static binary), the compose file's services, commands and environment
// against sumkeep's real flags, Prometheus's configuration with promtool,
// the dashboard's queries against the metric names, and the Helm chart
// with helm lint and helm template.

var deployDir = filepath.Join("..", "..", "deploy")

// commandFlags returns the flags of a sumkeep command, from its -h output.
func commandFlags(t *testing.T, name string) map[string]bool {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{name, "-h"}, nil, &stdout, &stderr,
		func(string) (string, bool) { return "", false }, runtime.GOMAXPROCS); code != 0 {
		t.Fatalf("sumkeep %s -h: exit %d\n%s", name, code, stderr.String())
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(stderr.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["db"] {
		t.Fatalf("sumkeep %s -h lists no --db:\n%s", name, stderr.String())
	}
	return flags
}

// checkInvocation checks that args (a sumkeep command line, without the
// program name) and env (SUMKEEP_* variables) name a real command and its
// real flags.
func checkInvocation(t *testing.T, where string, args []string, env []string) {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no sumkeep command", where)
		return
	}
	name := args[0]
	if _, ok := commandHelp[name]; !ok {
		t.Errorf("%s: sumkeep has no command %q", where, name)
		return
	}
	flags := commandFlags(t, name)
	known := func(flag string) bool {
		return flags[flag]
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		flag, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !known(flag) {
			t.Errorf("%s: sumkeep %s has no flag --%s", where, name, flag)
		}
	}
	// The environment may be shared by several commands (a compose file's
	// common block): each command takes the variables of its own flags
	// and ignores the others, but each variable must be some command's.
	for _, e := range env {
		if !strings.HasPrefix(e, "SUMKEEP_") {
			continue
		}
		flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e, "SUMKEEP_")), "_", "-")
		if known(flag) {
			continue
		}
		some := false
		for other := range commandHelp {
			if other != name && commandFlags(t, other)[flag] {
				some = true
				break
			}
		}
		if !some {
			t.Errorf("%s: %s sets no flag of any sumkeep command", where, e)
		}
	}
}

func readDeploy(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeployCompose: compose.yaml has Postgres, one syncer on a schedule
// with its metrics port, two servers, Prometheus and Grafana; every sumkeep
// command and SUMKEEP_ variable is real; every file it mounts exists; and
// Prometheus scrapes exactly the ports the sumkeep services listen on.
func TestDeployCompose(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       map[string]string `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Ports       []string          `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(readDeploy(t, "compose.yaml"), &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	images := map[string]string{}
	listens := map[string]string{} // service -> host:port Prometheus should scrape
	var serves, syncs []string
	for name, s := range compose.Services {
		images[name] = s.Image
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
					t.Errorf("compose.yaml: service %s mounts %s: %v", name, src, err)
				}
			}
		}
		if s.Image != "sumkeep:local" {
			continue
		}
		if s.Build["dockerfile"] != "deploy/Dockerfile" || s.Build["context"] != ".." {
			t.Errorf("compose.yaml: service %s builds %v, want deploy/Dockerfile from the repository's root", name, s.Build)
		}
		var env []string
		for k := range s.Environment {
			env = append(env, k)
		}
		checkInvocation(t, "compose.yaml service "+name, s.Command, env)
		if !strings.HasPrefix(s.Environment["SUMKEEP_DB"], "postgres://") {
			t.Errorf("compose.yaml: service %s: SUMKEEP_DB %q is not the Postgres service", name, s.Environment["SUMKEEP_DB"])
		}
		switch s.Command[0] {
		case "serve":
			serves = append(serves, name)
			if i := slices.Index(s.Command, "--listen"); i > 0 && i+1 < len(s.Command) {
				listens[name] = name + s.Command[i+1]
			}
		case "sync":
			syncs = append(syncs, name)
			if !slices.Contains(s.Command, "--schedule") {
				t.Errorf("compose.yaml: syncer %s runs %v, want sync --schedule", name, s.Command)
			}
			if i := slices.Index(s.Command, "--metrics-listen"); i > 0 && i+1 < len(s.Command) {
				listens[name] = name + s.Command[i+1]
			}
		}
	}
	if len(serves) != 2 || len(syncs) != 1 {
		t.Errorf("compose.yaml: servers %v and syncers %v, want two and one", serves, syncs)
	}
	for _, want := range []string{"postgres", "prometheus", "grafana"} {
		if !strings.HasPrefix(images[want], want) && !strings.Contains(images[want], "/"+want) {
			t.Errorf("compose.yaml: service %s has image %q", want, images[want])
		}
	}

	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readDeploy(t, filepath.Join("prometheus", "prometheus.yml")), &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	var want []string
	for _, l := range listens {
		want = append(want, l)
	}
	slices.Sort(targets)
	slices.Sort(want)
	if !slices.Equal(targets, want) {
		t.Errorf("prometheus.yml scrapes %v; the sumkeep services listen on %v", targets, want)
	}
}

// TestDeployPrometheusConfig: promtool (Debian's prometheus package)
// accepts the compose file's Prometheus configuration.
func TestDeployPrometheusConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is required in CI (apt-get install prometheus)")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	out, err := exec.Command(promtool, "check", "config", filepath.Join(deployDir, "prometheus", "prometheus.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// metricContract is the metric names the metrics code exports and the
// dashboard is built on (README.md, Operations); histograms are named
// without their _bucket, _sum and _count series.
var metricContract = []string{
	"sumkeep_http_requests_total",
	"sumkeep_http_request_duration_seconds",
	"sumkeep_lookups_total",
	"sumkeep_upstream_request_duration_seconds",
	"sumkeep_upstream_errors_total",
	"sumkeep_upstream_lies_total",
	"sumkeep_upstream_state",
	"sumkeep_upstream_hedged_requests_total",
	"sumkeep_log_served_tree_size",
	"sumkeep_log_newest_tree_size",
	"sumkeep_log_served_head_age_seconds",
	"sumkeep_log_lag_records",
	"sumkeep_log_records_stored",
	"sumkeep_sync_runs_total",
	"sumkeep_sync_duration_seconds",
	"sumkeep_sync_records_written_total",
	"sumkeep_sync_tiles_written_total",
	"sumkeep_sync_last_success_timestamp_seconds",
	"sumkeep_evidence",
	"sumkeep_store_size_bytes",
}

// TestDeployDashboard: the Grafana dashboard is valid JSON, queries only
// the contract's metric names (and every one of them), reads its data
// source from a variable, and is where the provisioning looks for it.
func TestDeployDashboard(t *testing.T) {
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	b := readDeploy(t, filepath.Join("grafana", "dashboards", "sumkeep.json"))
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("sumkeep.json: %v", err)
	}
	contract := map[string]bool{}
	for _, m := range metricContract {
		contract[m] = true
	}
	histogram := regexp.MustCompile(`_(bucket|sum|count)$`)
	name := regexp.MustCompile(`\bsumkeep_[a-z_]+\b`)
	used := map[string]bool{}
	check := func(where, expr string) {
		for _, m := range name.FindAllString(expr, -1) {
			base := m
			if !contract[base] {
				base = histogram.ReplaceAllString(m, "")
			}
			if !contract[base] {
				t.Errorf("%s queries %s, which is not a metric of the contract", where, m)
			}
			used[base] = true
		}
	}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			check("panel "+p.Title, tg.Expr)
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %s: data source %q, want the ${datasource} variable", p.Title, tg.Datasource.UID)
			}
		}
	}
	for _, v := range dash.Templating.List {
		q, _ := json.Marshal(v.Query)
		check("variable "+v.Name, string(q))
	}
	if queries < 15 {
		t.Errorf("the dashboard has %d queries", queries)
	}
	for _, m := range metricContract {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}

	var providers struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(readDeploy(t, filepath.Join("grafana", "provisioning", "dashboards", "sumkeep.yaml")), &providers); err != nil {
		t.Fatal(err)
	}
	compose := string(readDeploy(t, "compose.yaml"))
	if len(providers.Providers) != 1 || !strings.Contains(compose, "./grafana/dashboards:"+providers.Providers[0].Options.Path) {
		t.Errorf("Grafana looks for dashboards in %+v; compose.yaml does not mount ./grafana/dashboards there", providers)
	}
	if !strings.Contains(string(readDeploy(t, filepath.Join("grafana", "provisioning", "datasources", "prometheus.yaml"))), "url: http://prometheus:9090") {
		t.Error("the provisioned data source is not the compose file's Prometheus")
	}
}

// dockerfile is the parsed deploy/Dockerfile: its instructions, with
// continuation lines joined.
func dockerfile(t *testing.T) [][2]string {
	t.Helper()
	var ins [][2]string
	var cur string
	for _, line := range strings.Split(string(readDeploy(t, "Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		cur += trimmed
		op, args, _ := strings.Cut(cur, " ")
		ins = append(ins, [2]string{strings.ToUpper(op), strings.TrimSpace(args)})
		cur = ""
	}
	return ins
}

// TestDeployDockerfile: the image is multi-stage and ends on an empty base
// run as a numeric non-root user, with the port exposed and an exec-form
// entrypoint; the build context (.dockerignore) keeps every package the
// binary needs; and the Dockerfile's own build command, run here, makes a
// static binary that runs. (hadolint is not installable on these machines;
// this is what can be checked without a container engine.)
func TestDeployDockerfile(t *testing.T) {
	ins := dockerfile(t)
	var froms []string
	var user, entrypoint, build string
	var exposed []string
	for _, in := range ins {
		switch in[0] {
		case "FROM":
			froms = append(froms, in[1])
			user = "" // per stage
		case "USER":
			user = in[1]
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in[1])...)
		case "ENTRYPOINT":
			entrypoint = in[1]
		case "RUN":
			if strings.Contains(in[1], "go build") {
				build = in[1]
			}
		case "HEALTHCHECK":
			t.Error("a HEALTHCHECK cannot run in an image without a shell")
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1], "scratch") {
		t.Errorf("stages %q: want a build stage and a final FROM scratch", froms)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
		t.Errorf("final stage runs as %q, want a numeric non-root user", user)
	}
	if !slices.Contains(exposed, "8080") {
		t.Errorf("EXPOSE %v lacks 8080", exposed)
	}
	if !strings.HasPrefix(entrypoint, "[") {
		t.Errorf("ENTRYPOINT %s is not in exec form (there is no shell)", entrypoint)
	}

	// The build context keeps every package of the binary.
	var ignore []string
	ib, err := os.ReadFile(filepath.Join("..", "..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(ib), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignore = append(ignore, l)
		}
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a module dependency, downloaded in the image
		}
		for _, f := range append([]string{"go.mod", "go.sum"}, rel) {
			if p := ignoredBy(ignore, filepath.ToSlash(f)); p != "" {
				t.Errorf(".dockerignore pattern %q leaves %s out of the build context", p, f)
			}
		}
	}

	// Run the Dockerfile's build command.
	if !strings.Contains(build, "CGO_ENABLED=0") {
		t.Fatalf("the build step %q does not set CGO_ENABLED=0", build)
	}
	cmdline, _, _ := strings.Cut(build, "&&")
	args := shellFields(cmdline)
	i := slices.Index(args, "go")
	if i < 0 || i+1 >= len(args) || args[i+1] != "build" {
		t.Fatalf("cannot find go build in %q", build)
	}
	var env []string
	for _, a := range args[:i] {
		if strings.Contains(a, "=") {
			env = append(env, a)
		}
	}
	bin := filepath.Join(t.TempDir(), "sumkeep")
	var goArgs []string
	for j := i + 1; j < len(args); j++ {
		switch args[j] {
		case "-o":
			goArgs = append(goArgs, "-o", bin)
			j++
		case "-trimpath":
			// It changes only the file paths recorded in the binary, and
			// would make this test compile every package anew instead of
			// taking them from the build cache.
		default:
			goArgs = append(goArgs, args[j])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	gb := exec.CommandContext(ctx, "go", goArgs...)
	gb.Dir = root
	gb.Env = append(append(os.Environ(), "GOFLAGS=-mod=mod"), env...)
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build step (go %s with %v): %v\n%s", strings.Join(goArgs, " "), env, err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader: it would not run FROM scratch")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "sumkeep ") {
		t.Errorf("%s version: %v %q", bin, err, out)
	}
}

// shellFields splits a shell command line into words, as sh does for the
// simple lines of a Dockerfile's RUN: on blanks, with quotes grouping and
// removed.
func shellFields(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// ignoredBy returns the .dockerignore pattern that excludes rel (a path
// relative to the context's root, or one of its parents), or "".
func ignoredBy(patterns []string, rel string) string {
	parts := strings.Split(rel, "/")
	for _, p := range patterns {
		for n := 1; n <= len(parts); n++ {
			prefix := strings.Join(parts[:n], "/")
			suffixes := []string{prefix}
			if strings.HasPrefix(p, "**/") {
				for k := 1; k < n; k++ {
					suffixes = append(suffixes, strings.Join(parts[k:n], "/"))
				}
			}
			for _, s := range suffixes {
				if ok, _ := path.Match(strings.TrimPrefix(p, "**/"), s); ok {
					return p
				}
			}
		}
	}
	return ""
}

// helmRun runs helm with its own home directories.
func helmRun(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name string `yaml:"name"`
	} `yaml:"env"`
	ReadinessProbe *struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	LivenessProbe *struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"livenessProbe"`
}

type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas *int `yaml:"replicas"`
		Template struct {
			Spec struct {
				SecurityContext map[string]any `yaml:"securityContext"`
				Containers      []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// helmTemplate renders the chart with the given --set values and returns
// its objects by kind and name.
func helmTemplate(t *testing.T, helm, chart string, set ...string) map[string]k8sObject {
	t.Helper()
	args := []string{"template", "rel", chart}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helmRun(t, helm, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	objs := map[string]k8sObject{}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var o k8sObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("helm template output: %v\n%s", err, doc)
		}
		if o.Kind != "" {
			objs[o.Kind+"/"+o.Metadata.Name] = o
		}
	}
	return objs
}

// TestDeployHelm: helm (built from its module, see internal/helmtest) lints
// the chart; rendered, it has a serve Deployment with readiness on /readyz
// and liveness on /livez and the replicas asked for, one syncer running
// sync --schedule, a Service, the DSN from an existing Secret or one it
// makes, the ServiceMonitor only when asked; every sumkeep flag and
// SUMKEEP_ variable it uses is real; and the notes print the GOSUMDB line.
func TestDeployHelm(t *testing.T) {
	helm := helmtest.Binary(t)
	chart := filepath.Join(deployDir, "helm", "sumkeep")
	if out, err := helmRun(t, helm, "lint", "--strict", chart, "--set", "database.existingSecret=sumkeep-db"); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
	if out, err := helmRun(t, helm, "template", "rel", chart); err == nil || !strings.Contains(out, "database.existingSecret") {
		t.Errorf("helm template without a database: %v, want a failure naming database.existingSecret\n%s", err, out)
	}

	check := func(objs map[string]k8sObject, replicas int, secret string) {
		t.Helper()
		serve, ok := objs["Deployment/rel-sumkeep-serve"]
		if !ok {
			t.Fatalf("no serve Deployment among %v", slices.Collect(maps.Keys(objs)))
		}
		if serve.Spec.Replicas == nil || *serve.Spec.Replicas != replicas {
			t.Errorf("serve replicas %v, want %d", serve.Spec.Replicas, replicas)
		}
		sync, ok := objs["Deployment/rel-sumkeep-sync"]
		if !ok || sync.Spec.Replicas == nil || *sync.Spec.Replicas != 1 {
			t.Fatalf("no syncer Deployment of one replica")
		}
		if _, ok := objs["Service/rel-sumkeep"]; !ok {
			t.Error("no Service")
		}
		for _, d := range []k8sObject{serve, sync} {
			if d.Spec.Template.Spec.SecurityContext["runAsNonRoot"] != true {
				t.Errorf("%s: not runAsNonRoot", d.Metadata.Name)
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				var env []string
				for _, e := range c.Env {
					env = append(env, e.Name)
				}
				checkInvocation(t, "chart "+d.Metadata.Name, c.Args, env)
				if !slices.Contains(env, "SUMKEEP_DB") {
					t.Errorf("%s: no SUMKEEP_DB", d.Metadata.Name)
				}
			}
		}
		c := serve.Spec.Template.Spec.Containers[0]
		if c.Args[0] != "serve" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
			c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/livez" {
			t.Errorf("serve container %+v: want serve with readiness /readyz and liveness /livez", c)
		}
		if sc := sync.Spec.Template.Spec.Containers[0]; sc.Args[0] != "sync" || !slices.Contains(sc.Args, "--schedule") {
			t.Errorf("syncer args %v, want sync --schedule", sc.Args)
		}
		_, made := objs["Secret/rel-sumkeep-db"]
		if made != (secret != "") {
			t.Errorf("Secret made: %v, want %v", made, secret != "")
		}
		if made && objs["Secret/rel-sumkeep-db"].StringData["dsn"] != secret {
			t.Errorf("Secret holds %v", objs["Secret/rel-sumkeep-db"].StringData)
		}
	}

	objs := helmTemplate(t, helm, chart, "database.existingSecret=sumkeep-db")
	check(objs, 2, "")
	if _, ok := objs["ServiceMonitor/rel-sumkeep"]; ok {
		t.Error("a ServiceMonitor without serviceMonitor.enabled")
	}

	dsn := "postgres://sumkeep:pw@db:5432/sumkeep"
	objs = helmTemplate(t, helm, chart, "database.dsn="+dsn, "serve.replicas=3", "serviceMonitor.enabled=true",
		"readReplica.enabled=true", "readReplica.existingSecret=sumkeep-db-read")
	check(objs, 3, dsn)
	if _, ok := objs["ServiceMonitor/rel-sumkeep"]; !ok {
		t.Error("no ServiceMonitor with serviceMonitor.enabled")
	}
	var env []string
	for _, e := range objs["Deployment/rel-sumkeep-serve"].Spec.Template.Spec.Containers[0].Env {
		env = append(env, e.Name)
	}
	if !slices.Contains(env, "SUMKEEP_DB_READ") {
		t.Errorf("readReplica.enabled: serve env %v lacks SUMKEEP_DB_READ", env)
	}

	// The notes: the GOSUMDB line of the key and the public URL. helm
	// renders NOTES.txt only when it installs (and then wants a cluster,
	// even for a client-side dry run), so a copy of the chart renders it
	// into a ConfigMap.
	notesChart := filepath.Join(t.TempDir(), "sumkeep")
	if err := os.CopyFS(notesChart, os.DirFS(chart)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(notesChart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notesChart, "templates", "_notes.tpl"),
		[]byte(`{{- define "test.notes" -}}`+"\n"+string(notes)+`{{- end -}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notesChart, "templates", "notes-test.yaml"), []byte(
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n{{ include \"test.notes\" . | indent 4 }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := helmRun(t, helm, "template", "rel", notesChart, "--show-only", "templates/notes-test.yaml",
		"--set", "database.existingSecret=x", "--set", "publicURL=https://sumkeep.corp.test")
	if err != nil {
		t.Fatalf("rendering NOTES.txt: %v\n%s", err, out)
	}
	if want := `go env -w GOSUMDB="` + defaultKey + ` https://sumkeep.corp.test"`; !strings.Contains(out, want) {
		t.Errorf("the notes lack %s:\n%s", want, out)
	}
}
