// Package appfile owns the YAML form of app specs: it parses a
// (multi-document) file into api.App values and reports every problem as
// FILE:LINE: field: what is wrong, so a user can fix the spec without
// guessing. A file is all or nothing: one bad document rejects the file.
package appfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/shoal-edge/shoal/api"
	"gopkg.in/yaml.v3"
)

// MaxSize bounds a spec file; specs are small and the parser is not a place
// to spend a device's memory.
const MaxSize = 4 << 20

// Error is one problem in a spec file.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Parse reads every app of a YAML file; file names the source in errors.
func Parse(file string, r io.Reader) ([]api.App, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, &Error{File: file, Msg: err.Error()}
	}
	if len(data) > MaxSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("larger than %d bytes", MaxSize)}
	}
	docs, err := documents(file, data)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var apps []api.App
	seen := map[string]int{}
	for i := 0; ; i++ {
		var app api.App
		err := dec.Decode(&app)
		if errors.Is(err, io.EOF) {
			break
		}
		if i >= len(docs) {
			break
		}
		doc := docs[i]
		if err != nil {
			return nil, decodeError(file, doc, err)
		}
		if doc.empty {
			continue
		}
		if _, set := doc.lines["replicas"]; set && app.Replicas == 0 && app.Mode != api.ModeGlobal {
			// The wire form cannot tell 0 from unset, and unset is 1.
			return nil, &Error{File: file, Line: doc.line("replicas"), Field: "replicas",
				Msg: "0 is not a spec's count (an app without replicas runs 1): to run none and keep the app, shoal scale " + app.Name + "=0; to remove it, shoal rm " + app.Name}
		}
		if err := explicitZeros(file, doc, app); err != nil {
			return nil, err
		}
		app.Defaults()
		err = app.Validate()
		if err == nil {
			err = app.CheckSupported()
		}
		if err != nil {
			var fe *api.FieldError
			if errors.As(err, &fe) {
				return nil, &Error{File: file, Line: doc.line(fe.Field), Field: fe.Field, Msg: fe.Msg}
			}
			return nil, &Error{File: file, Line: doc.start, Msg: err.Error()}
		}
		if prev, dup := seen[app.Name]; dup {
			return nil, &Error{File: file, Line: doc.line("name"), Field: "name",
				Msg: fmt.Sprintf("app %q is defined twice (first at line %d)", app.Name, prev)}
		}
		seen[app.Name] = doc.line("name")
		apps = append(apps, app)
	}
	if len(apps) == 0 {
		return nil, &Error{File: file, Msg: "no apps in file"}
	}
	return apps, nil
}

// explicitZeros refuses a health field set to 0 where the wire form
// cannot tell 0 from unset, and unset means the default: retries: 0 would
// have run as 3, interval: 0 as 10s, and the user none the wiser.
func explicitZeros(file string, d doc, app api.App) error {
	h := app.Health
	if h == nil {
		return nil
	}
	for _, f := range []struct {
		field string
		zero  bool
		want  string
	}{
		{"health.retries", h.Retries == 0, "at least 1 (leave it out for 3)"},
		{"health.interval", h.Interval == 0, "more than 0 (leave it out for 10s)"},
		{"health.timeout", h.Timeout == 0, "more than 0 (leave it out for 5s)"},
	} {
		if _, set := d.lines[f.field]; set && f.zero {
			return &Error{File: file, Line: d.line(f.field), Field: f.field, Msg: "0: want " + f.want}
		}
	}
	return nil
}

// doc is one YAML document and the line of every field path in it.
type doc struct {
	start int
	empty bool
	lines map[string]int    // "resources.memory" -> line of its key
	vals  map[string]string // scalar values by path, to place errors that carry no line
}

func (d doc) line(field string) int {
	// "ports[2]" and "placement.arch" resolve to the closest known path.
	for field != "" {
		if l, ok := d.lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return d.start
}

func documents(file string, data []byte) ([]doc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []doc
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, syntaxError(file, data, err)
		}
		d := doc{start: n.Line, lines: map[string]int{}, vals: map[string]string{}}
		root := &n
		if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
			root = root.Content[0]
		}
		switch {
		case root.Kind == yaml.ScalarNode && root.Tag == "!!null":
			d.empty = true
		case root.Kind != yaml.MappingNode:
			return nil, &Error{File: file, Line: root.Line, Msg: "an app spec must be a mapping of fields (name: ..., image: ...)"}
		}
		walk(root, "", d)
		docs = append(docs, d)
	}
}

func walk(n *yaml.Node, path string, d doc) {
	lines := d.lines
	switch n.Kind {
	case yaml.ScalarNode:
		d.vals[path] = n.Value
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			p := key.Value
			if path != "" {
				p = path + "." + key.Value
			}
			// The key's line: a block mapping or list starts below it,
			// and "update: ..." is where the reader looks for update.
			lines[p] = key.Line
			walk(val, p, d)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			lines[p] = c.Line
			walk(c, p, d)
		}
	}
}

// The patterns of yaml.v3's messages, compiled on first use: every process
// of the binary would otherwise pay for them at start.
var (
	lineRe    = lazyRE(`line (\d+): (.*)`)
	unknownRe = lazyRE(`field (\S+) not found in type`)
	quotedRe  = lazyRE(`"([^"]*)"`)
	typeRe    = lazyRE("cannot unmarshal !!(\\w+) `(.*)` into (\\S+)")
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

func syntaxError(file string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := lineRe().FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if strings.HasPrefix(msg, "did not find expected ',' or ") && line > 0 {
		// A flow list or mapping left open: yaml.v3 names the line it
		// opens, counted from 0, which is the line to look at; where the
		// text stops parsing is further down, wherever the next key is.
		open := "["
		if strings.HasSuffix(msg, "'}'") {
			open = "{"
		}
		return &Error{File: file, Line: line + 1, Msg: "YAML syntax: " + msg + ": the " + open + " opened on this line is not closed"}
	}
	if l := problemLine(data, err, line); l > 0 {
		return &Error{File: file, Line: l, Msg: "YAML syntax: " + msg}
	}
	return &Error{File: file, Msg: "YAML syntax: " + msg}
}

// problemLine is the line of a YAML syntax error: the first line at which
// the file, cut after it, fails with the same error.
//
// yaml.v3's own line is not that line. It names the construct the parser
// was in (the block mapping, the flow list) when it has one, else the
// token it could not take; and it counts from 0 for the parser's errors
// and from 1 for the scanner's. So "resources:\n  memory: 1\n cpu: 1"
// says line 2, and a "- a" under a mapping the line above it. The text
// up to the faulty token fails alike, and one line less does not; the
// line it reports is never past that one. A construct left open ("[a,"
// or a quote) fails alike from the line it opens, which is the line to
// look at. Cutting a valid file inside an open construct can fail too, so
// the search narrows on the same error, message and line, as err.
//
// Only the document of the error is parsed again (a "---" line starts
// one, whatever precedes it), a few times: the search gallops from the
// reported line, then halves; about a second for a document of maxSearch. A document past maxSearch keeps yaml.v3's
// line: no app's spec is that big, and each parse costs its size.
func problemLine(data []byte, err error, reported int) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	want := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRe().FindStringSubmatch(want); m != nil {
		want = m[2]
	}
	// The document: from the last "---" line at or before the reported
	// line (the error lies past it, in the same document).
	from := 0
	for i := 0; i < len(lines) && i < reported; i++ {
		if docStart(lines[i]) {
			from = i
		}
	}
	// To the next "---" line, which it takes too: a construct left open
	// may fail there.
	to := len(lines)
	for i := max(reported, from+1); i < len(lines); i++ {
		if docStart(lines[i]) {
			to = i + 1
			break
		}
	}
	doc := lines[from:to]
	if len(bytes.Join(doc, nil)) > maxSearch {
		return reported
	}
	// same says whether the document's first k lines fail as the file.
	same := func(k int) bool {
		e := firstError(bytes.Join(doc[:k], nil))
		if e == nil {
			return false
		}
		msg, line := strings.TrimPrefix(e.Error(), "yaml: "), 0
		if m := lineRe().FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
			line += from
		}
		return msg == want && line == reported
	}
	lo, hi := max(reported-from, 1), len(doc)
	if lo > hi || !same(hi) {
		return reported
	}
	// Gallop (lo, lo+1, lo+3, lo+7...): the faulty line is mostly the
	// reported one or the next.
	for k, inc := lo, 1; k < hi; k, inc = min(k+inc, hi), 2*inc {
		if same(k) {
			hi = k
			break
		}
		lo = k + 1
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if same(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return from + lo
}

// maxSearch bounds the YAML document problemLine parses again.
const maxSearch = 256 << 10

// docStart says whether a line starts a YAML document.
func docStart(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	return ok && (len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r')
}

// firstError is the syntax error of the first document of data that has
// one.
func firstError(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// decodeError turns yaml.v3's messages into FILE:LINE: field: message.
func decodeError(file string, d doc, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := lineRe().FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &Error{File: file, Line: line, Field: fieldAt(d, line), Msg: m[2]}
		}
		// Errors of our own text types (sizes, durations) carry no line:
		// find the scalar they quote.
		if q := quotedRe().FindStringSubmatch(msg); q != nil {
			for p, v := range d.vals {
				if v == q[1] {
					return &Error{File: file, Line: d.lines[p], Field: p, Msg: msg}
				}
			}
		}
		return &Error{File: file, Line: d.start, Msg: msg}
	}
	m := lineRe().FindStringSubmatch(te.Errors[0])
	if m == nil {
		return &Error{File: file, Line: d.start, Msg: te.Errors[0]}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	if u := unknownRe().FindStringSubmatch(msg); u != nil {
		// The whole path where the key's line names it: "resources.cpus".
		field := u[1]
		for p, l := range d.lines {
			if l == line && strings.HasSuffix(p, "."+u[1]) {
				field = p
			}
		}
		return &Error{File: file, Line: line, Field: field, Msg: "unknown field"}
	}
	if t := typeRe().FindStringSubmatch(msg); t != nil {
		msg = fmt.Sprintf("%q is a %s, want %s", t[2], yamlKind(t[1]), goKind(t[3]))
	}
	return &Error{File: file, Line: line, Field: fieldAt(d, line), Msg: msg}
}

func fieldAt(d doc, line int) string {
	best := ""
	for p, l := range d.lines {
		if l == line && (best == "" || len(p) > len(best)) {
			best = p
		}
	}
	return best
}

func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "string"
	case "seq":
		return "list"
	case "map":
		return "mapping"
	case "int", "float":
		return "number"
	}
	return tag
}

func goKind(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	}
	return "a " + strings.TrimPrefix(t, "api.")
}
