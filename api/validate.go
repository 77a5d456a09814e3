package api

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidName reports whether s is a DNS label, the rule for app and node
// names: 1-63 lower-case letters, digits and '-', not starting or ending
// with '-'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Defaults fills the fields a spec may leave out.
func (a *App) Defaults() {
	if a.Mode == "" {
		a.Mode = ModeReplicated
	}
	if a.Mode == ModeReplicated && a.Replicas == 0 {
		a.Replicas = 1
	}
	if a.Restart == "" {
		a.Restart = RestartAlways
	}
	if a.Network == "" {
		a.Network = NetworkBridge
	}
	if a.Mode == ModeReplicated && a.RescheduleAfter == 0 {
		a.RescheduleAfter = Duration(60e9)
	}
}

// Validate checks an app after Defaults and returns the first problem as a
// *FieldError.
func (a *App) Validate() error {
	switch {
	case a.Name == "":
		return fieldErr("name", "required")
	case !ValidName(a.Name):
		return fieldErr("name", "%q is not a DNS label (lower-case letters, digits and '-', at most 63)", a.Name)
	case a.Image == "":
		return fieldErr("image", "required")
	case strings.ContainsAny(a.Image, " \t\n"):
		return fieldErr("image", "%q contains white space", a.Image)
	case strings.Contains(a.Image, "\x00"):
		return fieldErr("image", "contains a NUL byte")
	}
	switch a.Mode {
	case ModeReplicated:
		if a.Replicas < 0 {
			return fieldErr("replicas", "must be 0 or more, got %d", a.Replicas)
		}
		if a.Replicas > 10000 {
			return fieldErr("replicas", "at most 10000, got %d", a.Replicas)
		}
	case ModeGlobal:
		if a.Replicas != 0 {
			return fieldErr("replicas", "not allowed with mode: global (one instance runs on every matching node)")
		}
		if a.RescheduleAfter != 0 {
			return fieldErr("reschedule_after", "not allowed with mode: global (global instances stay with their node)")
		}
	default:
		return fieldErr("mode", "must be replicated or global, got %q", a.Mode)
	}
	for k, v := range a.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fieldErr("env", "invalid variable name %q", k)
		}
		if strings.Contains(v, "\x00") {
			return fieldErr("env."+k, "contains a NUL byte, which no process environment can hold")
		}
	}
	// The kernel takes arguments and paths as C strings: a NUL would cut
	// them short, or fail the start with a bare "invalid argument".
	lists := map[string][]string{"command": a.Command, "volumes": a.Volumes}
	if a.Health != nil {
		lists["health.exec"] = a.Health.Exec
	}
	for field, list := range lists {
		for i, v := range list {
			if strings.Contains(v, "\x00") {
				return fieldErr(fmt.Sprintf("%s[%d]", field, i), "contains a NUL byte")
			}
		}
	}
	if a.User != "" && !validUser(a.User) {
		return fieldErr("user", "%q: want uid, uid:gid, name or name:group", a.User)
	}
	for name, v := range a.Rlimits {
		if !slices.Contains(rlimitNames, name) {
			return fieldErr("rlimits."+name, "unknown limit (known: %s)", strings.Join(rlimitNames, ", "))
		}
		if _, _, err := ParseRlimit(v); err != nil {
			return fieldErr("rlimits."+name, "%v", err)
		}
	}
	for _, arch := range a.Placement.Arch {
		switch arch {
		case "amd64", "arm64", "arm", "riscv64", "386":
		default:
			return fieldErr("placement.arch", "unknown architecture %q (amd64, arm64, arm, riscv64)", arch)
		}
	}
	if err := a.Resources.validate(); err != nil {
		return err
	}
	switch a.Restart {
	case RestartAlways, RestartOnFailure, RestartNever:
	default:
		return fieldErr("restart", "must be always, on-failure or never, got %q", a.Restart)
	}
	switch a.Network {
	case NetworkBridge, NetworkHost:
	default:
		return fieldErr("network", "must be bridge or host, got %q", a.Network)
	}
	for i, p := range a.Ports {
		if _, err := ParsePort(p); err != nil {
			return fieldErr(fmt.Sprintf("ports[%d]", i), "%v", err)
		}
	}
	for i, v := range a.Volumes {
		if _, err := ParseVolume(v); err != nil {
			return fieldErr(fmt.Sprintf("volumes[%d]", i), "%v", err)
		}
	}
	if h := a.Health; h != nil {
		n := 0
		for _, set := range []bool{h.HTTP != "", h.TCP != "", len(h.Exec) > 0} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fieldErr("health", "set exactly one of http, tcp, exec")
		}
		if h.Retries < 0 || h.Interval < 0 || h.Timeout < 0 || h.StartPeriod < 0 {
			return fieldErr("health", "interval, timeout, retries and start_period must not be negative")
		}
		if h.HTTP != "" && !strings.HasPrefix(h.HTTP, "http://") {
			return fieldErr("health.http", "%q: want an http:// URL", h.HTTP)
		}
	}
	if a.Update != nil && a.Update.MaxUnavailable < 0 {
		return fieldErr("update.max_unavailable", "must not be negative")
	}
	if a.RescheduleAfter < 0 {
		return fieldErr("reschedule_after", "must not be negative")
	}
	return nil
}

// CheckSupported refuses what a well-formed spec may say but this release
// does not do, so that an operator never believes a field is honoured when
// it is not. The API edge calls it on every spec it is given, after
// Validate; the state machine never does, so that entries an earlier
// release committed stay applicable on every node.
func (a *App) CheckSupported() error {
	switch {
	case a.Update != nil:
		return fieldErr("update", "rolling updates are not supported yet: a new version replaces every instance in place, all at once; remove update:")
	case len(a.Ports) > 0 && a.Network == NetworkHost:
		return fieldErr("ports", "not with network: host: the container listens on the host's own ports, so there is nothing to publish; remove ports:")
	case len(a.Ports) > 0:
		return fieldErr("ports", "publishing ports from the bridge network is not available yet; use network: host and listen on the port directly")
	}
	return nil
}

func (r Resources) validate() error {
	switch {
	case math.IsNaN(r.CPU) || math.IsInf(r.CPU, 0):
		return fieldErr("resources.cpu", "must be a number of cores, got %v", r.CPU)
	case r.CPU < 0:
		return fieldErr("resources.cpu", "must not be negative, got %v", r.CPU)
	case r.CPU > MaxCPU:
		return fieldErr("resources.cpu", "at most %d cores, got %v", MaxCPU, r.CPU)
	case r.Memory < 0:
		return fieldErr("resources.memory", "must not be negative")
	case r.Memory != 0 && r.Memory < 4<<20:
		return fieldErr("resources.memory", "%s is too small to start a process (at least 4Mi)", r.Memory)
	case r.Pids < 0:
		return fieldErr("resources.pids", "must not be negative, got %d", r.Pids)
	case r.Pids > MaxPids:
		return fieldErr("resources.pids", "at most %d (the kernel's own limit), got %d", MaxPids, r.Pids)
	}
	return nil
}

// MaxCPU and MaxPids bound resources: a CPU limit beyond any machine's
// cores would overflow the cgroup's quota, and pids.max takes no more
// than the kernel's PID_MAX_LIMIT.
const (
	MaxCPU  = 4096
	MaxPids = 1 << 22
)

// Port is a published port: node port -> container port.
type Port struct {
	Node      int
	Container int
	Proto     string
}

// ParsePort reads "8080:80/tcp", "8080:80" or "80".
func ParsePort(s string) (Port, error) {
	p := Port{Proto: "tcp"}
	spec, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return p, fmt.Errorf("%q: protocol must be tcp or udp", s)
		}
		p.Proto = proto
	}
	node, ctr, pair := strings.Cut(spec, ":")
	if !pair {
		ctr = node
	}
	var err error
	if p.Container, err = portNum(ctr); err != nil {
		return p, fmt.Errorf("%q: %v", s, err)
	}
	p.Node = p.Container
	if pair {
		if p.Node, err = portNum(node); err != nil {
			return p, fmt.Errorf("%q: %v", s, err)
		}
	}
	return p, nil
}

func portNum(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return n, nil
}

// SanitizeName turns a host name into a valid node name.
func SanitizeName(s string) string {
	s = strings.ToLower(s)
	if i := strings.IndexByte(s, '.'); i > 0 {
		s = s[:i]
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	s = strings.Trim(string(b), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	if s == "" {
		return "node"
	}
	return s
}

// validUser accepts "user" or "user:group", each a uid/gid or a name of at
// most 32 letters, digits, '_', '.', '-' not starting with '.' or '-'.
func validUser(s string) bool {
	u, g, hasGroup := strings.Cut(s, ":")
	return validUserPart(u) && (!hasGroup || validUserPart(g))
}

func validUserPart(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Volume is one entry of an app's volumes.
type Volume struct {
	Source   string // a volume name, or an absolute host path
	Target   string
	HostPath bool
	ReadOnly bool
}

// ParseVolume reads "NAME:/path", "/host/path:/path" and either with ":ro"
// or ":rw" after it.
func ParseVolume(s string) (Volume, error) {
	parts := strings.Split(s, ":")
	var v Volume
	switch {
	case len(parts) == 3 && (parts[2] == "ro" || parts[2] == "rw"):
		v.ReadOnly = parts[2] == "ro"
	case len(parts) != 2:
		return v, fmt.Errorf("%q: want NAME:/path or /host/path:/path, optionally with :ro", s)
	}
	v.Source, v.Target = parts[0], parts[1]
	v.HostPath = strings.HasPrefix(v.Source, "/")
	switch {
	case !strings.HasPrefix(v.Target, "/"):
		return v, fmt.Errorf("%q: the container path %q must be absolute", s, v.Target)
	case v.HostPath && strings.Contains(v.Source, ".."):
		return v, fmt.Errorf("%q: the host path must not contain \"..\"", s)
	case !v.HostPath && !ValidName(v.Source):
		return v, fmt.Errorf("%q: volume name %q must be a DNS label (or give an absolute host path)", s, v.Source)
	}
	return v, nil
}

// rlimitNames are the resource limits an app may set (setrlimit(2) names,
// lower case, without RLIMIT_).
var rlimitNames = []string{"as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue",
	"nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}

// Unlimited is RLIM_INFINITY.
const Unlimited = ^uint64(0)

// ParseRlimit reads "N" (soft = hard), "SOFT:HARD" or "unlimited".
func ParseRlimit(v string) (soft, hard uint64, err error) {
	num := func(s string) (uint64, error) {
		if s == "unlimited" {
			return Unlimited, nil
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: want a number or unlimited", s)
		}
		return n, nil
	}
	s, h, pair := strings.Cut(strings.TrimSpace(v), ":")
	if soft, err = num(s); err != nil {
		return 0, 0, err
	}
	hard = soft
	if pair {
		if hard, err = num(h); err != nil {
			return 0, 0, err
		}
	}
	if soft > hard {
		return 0, 0, fmt.Errorf("%q: the soft limit is above the hard one", v)
	}
	return soft, hard, nil
}

// ValidLabel checks a node label: its key (ValidLabelKey) and its value,
// at most MaxLabelValue bytes of printable UTF-8 (tables and logs show
// it, and a newline would forge their lines).
func ValidLabel(k, v string) error {
	if err := ValidLabelKey(k); err != nil {
		return fmt.Errorf("label %q: %w", k, err)
	}
	if len(v) > MaxLabelValue {
		return fmt.Errorf("label %s: its value is %d bytes, at most %d", k, len(v), MaxLabelValue)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("label %s: its value is not UTF-8", k)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Errorf("label %s: its value holds the control character %q", k, r)
		}
	}
	return nil
}

// MaxLabelValue bounds a label's value.
const MaxLabelValue = 255

// ValidLabelKey checks a node label's key: letters, digits, '-', '_', '.'
// and '/', at most 63 bytes, starting with a letter or digit.
func ValidLabelKey(k string) error {
	if k == "" || len(k) > 63 {
		return errors.New("must be 1-63 characters")
	}
	for i, r := range k {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && strings.ContainsRune("-_./", r))
		if !ok {
			return fmt.Errorf("character %q at %d: use letters, digits, '-', '_', '.' or '/'", r, i)
		}
	}
	return nil
}
