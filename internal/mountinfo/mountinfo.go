// Package mountinfo owns the reading of /proc/PID/mountinfo (proc(5)):
// "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE
// SUPER", with the kernel's octal escapes (\040 for a space) undone.
package mountinfo

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Entry is one mount.
type Entry struct {
	Dev    string // MAJ:MIN of the file system
	Root   string // the directory of the file system mounted here
	Point  string // where it is mounted
	FSType string
}

// Parse reads a mountinfo file; lines it cannot read are passed over.
func Parse(r io.Reader) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 5 || sep+1 >= len(f) {
			continue
		}
		out = append(out, Entry{Dev: f[2], Root: unescape(f[3]), Point: unescape(f[4]), FSType: f[sep+1]})
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's \ooo octal escapes.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
