package appfile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-edge/shoal/api"
)

func TestParseGood(t *testing.T) {
	src := `name: web
image: hello:1
command: ["/hello", "--port", "8080"]
env: {GREETING: hi}
replicas: 2
resources: {cpu: 0.5, memory: 64Mi, pids: 256}
restart: on-failure
health: {http: "http://127.0.0.1:8080/healthz", interval: 5s, timeout: 2s, retries: 3}
---
name: agent
image: agent:2
mode: global
network: host
`
	apps, err := Parse("app.yaml", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 {
		t.Fatalf("got %d apps, want 2", len(apps))
	}
	w := apps[0]
	if w.Replicas != 2 || w.Resources.Memory != 64<<20 || w.Resources.CPU != 0.5 || w.Restart != "on-failure" ||
		w.Health.Interval.D().Seconds() != 5 || w.Env["GREETING"] != "hi" || w.Mode != api.ModeReplicated {
		t.Errorf("web parsed wrong: %+v", w)
	}
	if a := apps[1]; a.Mode != api.ModeGlobal || a.Network != api.NetworkHost || a.Restart != api.RestartAlways {
		t.Errorf("agent parsed wrong: %+v", a)
	}
}

// A YAML syntax error names the line of the faulty token, or of the
// construct it leaves open, whatever kind of error it is.
func TestSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"key under a scalar", "name: web\nimage: x\n  bad: 1\n", "f.yaml:3: YAML syntax: mapping values are not allowed in this context"},
		{"key out of its mapping's column", "name: web\nimage: x\nresources:\n  memory: 32Mi\n cpu: 1\n", "f.yaml:5: YAML syntax: did not find expected key"},
		{"key out of the first mapping's column", "# web\nname: web\nimage: x\nresources:\n  memory: 32Mi\n cpu: 1\n", "f.yaml:6: YAML syntax: did not find expected key"},
		{"list item in a mapping", "name: web\nimage: x\n- a\n", "f.yaml:3: YAML syntax: did not find expected key"},
		{"key in a list", "name: web\nimage: x\nenv:\n  - a\n  b: c\n", "f.yaml:5: YAML syntax: did not find expected '-' indicator"},
		{"text after a quote", "name: web\nimage: x\nkey: 'a'b\n", "f.yaml:3: YAML syntax: did not find expected key"},
		{"tab", "name: web\nimage: x\n\tports: 1\n", "f.yaml:3: YAML syntax: found a tab character that violates indentation"},
		{"reserved character", "name: web\nimage: @x\n", "f.yaml:2: YAML syntax: found character that cannot start any token"},
		{"unclosed flow list", "name: web\ncommand: [a, b\nimage: x\n", "f.yaml:2: YAML syntax: did not find expected ',' or ']': the [ opened on this line is not closed"},
		{"unclosed flow mapping", "name: web\n\nimage: x\nresources: {memory: 1\nother: 2\n", "f.yaml:4: YAML syntax: did not find expected ',' or '}': the { opened on this line is not closed"},
		{"flow list left open across lines", "name: y6\nimage: bb:1\ncommand: [sh, -c,\n  \"x\"\nrestart: always\n", "f.yaml:3: YAML syntax: did not find expected ',' or ']': the [ opened on this line is not closed"},
		{"flow mapping left open across lines", "name: y6\nimage: bb:1\nenv: {A: b,\n  C: d\nrestart: always\n", "f.yaml:3: YAML syntax: did not find expected ',' or '}': the { opened on this line is not closed"},
		{"unclosed quote", "name: web\nimage: \"x\ncommand: [a]\n", "f.yaml:2: YAML syntax: found unexpected end of stream"},
		{"closed flow list, then an error", "name: web\ncommand: [a,\n  b]\nimage: x\n  bad: 1\n", "f.yaml:5: YAML syntax: mapping values are not allowed in this context"},
		{"second document", "name: a\nimage: x\n---\nname: b\nimage: y\nenv:\n  A: 1\n B: 2\n", "f.yaml:8: YAML syntax: did not find expected key"},
		{"first line", "- a\nb: c\n", "f.yaml:2: YAML syntax: did not find expected '-' indicator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", strings.NewReader(tc.src))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown field", "name: web\nimage: x\nreplica: 2\n", "f.yaml:3: replica: unknown field"},
		{"wrong type", "name: web\nimage: x\nreplicas: two\n", `f.yaml:3: replicas: "two" is a string, want a whole number`},
		{"missing image", "name: web\n", "f.yaml:1: image: required"},
		{"bad name", "name: Web_1\nimage: x\n", `f.yaml:1: name: "Web_1" is not a DNS label`},
		{"bad memory", "name: web\nimage: x\nresources:\n  memory: lots\n", `f.yaml:4: resources.memory: invalid size "lots"`},
		{"bad restart", "name: web\nimage: x\nrestart: sometimes\n", `f.yaml:3: restart: must be always, on-failure or never`},
		{"bad port", "name: web\nimage: x\nports:\n  - \"8080:99999\"\n", `f.yaml:4: ports[0]: "8080:99999": port "99999"`},
		{"global replicas", "name: web\nimage: x\nmode: global\nreplicas: 3\n", "f.yaml:4: replicas: not allowed with mode: global"},
		{"second doc bad", "name: a\nimage: x\n---\nname: b\nimage: y\nmode: sideways\n", `f.yaml:6: mode: must be replicated or global`},
		{"syntax", "name: web\nimage: [x\n", "f.yaml:"},
		{"duplicate", "name: a\nimage: x\n---\nname: a\nimage: y\n", `f.yaml:4: name: app "a" is defined twice (first at line 1)`},
		{"not a mapping", "- a\n- b\n", "f.yaml:1: an app spec must be a mapping"},
		{"empty", "", "f.yaml: no apps in file"},
		{"unknown nested field", "name: web\nimage: x\nresources:\n  memory: 64Mi\n  cpus: 2\n", "f.yaml:5: resources.cpus: unknown field"},
		{"unknown field in a flow mapping", "name: web\nimage: x\nhealth: {tcp: \":80\", every: 5s}\n", "f.yaml:3: health.every: unknown field"},
		{"update", "name: web\nimage: x\nupdate: {max_unavailable: 1}\n", "f.yaml:3: update: rolling updates are not supported yet"},
		{"update block", "name: web\nimage: x\nupdate:\n  auto_revert: true\n", "f.yaml:3: update: rolling updates are not supported yet"},
		{"ports with host network", "name: web\nimage: x\nnetwork: host\nports:\n  - \"8080:8080\"\n", "f.yaml:4: ports: not with network: host: the container listens on the host's own ports"},
		{"ports with bridge network", "name: web\nimage: x\nports: [\"80\"]\n", "f.yaml:3: ports: publishing ports from the bridge network is not available yet"},
		{"cpu not a number", "name: web\nimage: x\nresources:\n  cpu: .nan\n", "f.yaml:4: resources.cpu: must be a number of cores"},
		{"cpu past any machine", "name: web\nimage: x\nresources:\n  cpu: 1e14\n", "f.yaml:4: resources.cpu: at most 4096 cores"},
		{"pids past the kernel's", "name: web\nimage: x\nresources:\n  pids: 9223372036854775807\n", "f.yaml:4: resources.pids: at most 4194304"},
		{"NUL in env", "name: web\nimage: x\nenv: {A: \"x\\0y\"}\n", "f.yaml:3: env.A: contains a NUL byte"},
		{"NUL in command", "name: web\nimage: x\ncommand: [\"/a\\0b\"]\n", "f.yaml:3: command[0]: contains a NUL byte"},
		{"replicas 0", "name: web\nimage: x\nreplicas: 0\n", "f.yaml:3: replicas: 0 is not a spec's count"},
		{"health retries 0", "name: web\nimage: x\nhealth:\n  tcp: 127.0.0.1:1\n  retries: 0\n", "f.yaml:5: health.retries: 0: want at least 1 (leave it out for 3)"},
		{"health interval 0", "name: web\nimage: x\nhealth:\n  tcp: 127.0.0.1:1\n  interval: 0s\n", "f.yaml:5: health.interval: 0: want more than 0 (leave it out for 10s)"},
		{"health timeout 0", "name: web\nimage: x\nhealth: {tcp: 127.0.0.1:1, timeout: 0s}\n", "f.yaml:3: health.timeout: 0: want more than 0 (leave it out for 5s)"},
		{"bad duration", "name: web\nimage: x\nhealth:\n  tcp: \":80\"\n  interval: soon\n", `f.yaml:5: health.interval: invalid duration "soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", strings.NewReader(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("name: web\nimage: hello:1\nreplicas: 2\n")
	f.Add("name: a\nimage: x\n---\nname: b\nimage: y\nmode: global\n")
	f.Add("resources: {memory: 1Gi, cpu: 2}\n")
	f.Fuzz(func(t *testing.T, src string) {
		apps, err := Parse("fuzz.yaml", strings.NewReader(src))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, a := range apps {
			if err := a.Validate(); err != nil {
				t.Fatalf("Parse accepted an invalid app: %v", err)
			}
			if err := a.CheckSupported(); err != nil {
				t.Fatalf("Parse accepted an app this release does not run: %v", err)
			}
		}
	})
}

func TestRlimits(t *testing.T) {
	apps, err := Parse("f.yaml", strings.NewReader("name: a\nimage: x\nrlimits: {nofile: 4096, nproc: \"100:200\", core: unlimited}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := apps[0].Rlimits; r["nofile"] != "4096" || r["nproc"] != "100:200" || r["core"] != "unlimited" {
		t.Fatalf("rlimits %v", r)
	}
	for src, want := range map[string]string{
		"name: a\nimage: x\nrlimits: {files: 10}\n":       "f.yaml:3: rlimits.files: unknown limit",
		"name: a\nimage: x\nrlimits: {nofile: \"9:8\"}\n": "f.yaml:3: rlimits.nofile: \"9:8\": the soft limit is above the hard one",
		"name: a\nimage: x\nrlimits: {nofile: lots}\n":    `f.yaml:3: rlimits.nofile: "lots": want a number or unlimited`,
	} {
		if _, err := Parse("f.yaml", strings.NewReader(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

// A syntax error in one document of a file of many is placed in the
// file's lines, by parsing that document again.
func TestSyntaxErrorLineBigFile(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "---\nname: web%d\nimage: x\n", i)
	}
	lines := strings.Count(b.String(), "\n")
	b.WriteString("---\nname: z\nimage: x\nenv:\n  A: b\n B: c\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "---\nname: v%d\nimage: x\n", i)
	}
	_, err := Parse("f.yaml", strings.NewReader(b.String()))
	want := fmt.Sprintf("f.yaml:%d: YAML syntax: did not find expected key", lines+6)
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}
