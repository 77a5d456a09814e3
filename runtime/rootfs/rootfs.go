// Package rootfs owns a container's writable root filesystem: an overlay
// whose read-only lower layer is an image's unpacked rootfs and whose upper
// layer, work dir and merged view live in a directory of the container's own.
//
// Layout of dir (created by Mount, removed by Unmount):
//
//	dir/upper   the container's writes (and whiteouts of deleted files)
//	dir/work    overlayfs scratch space
//	dir/merged  the mount point: what the container sees as /
//
// The image directory is never written: many containers share it.
package rootfs

import (
	"bufio"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// mountPoints returns the mount points listed in a mountinfo file
// (proc(5)), with the kernel's octal escapes (\040 for a space) undone.
func mountPoints(r io.Reader) ([]string, error) {
	var out []string
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 5 {
			continue
		}
		out = append(out, unescape(f[4]))
	}
	return out, s.Err()
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

// under returns the points at or below dir, deepest first, so that a
// mount is always unmounted before the one it sits on.
func under(points []string, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, p := range points {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// overlayOptions builds the mount data. Overlay's option syntax gives ','
// and ':' a meaning, so paths holding them are refused rather than escaped.
func overlayOptions(lower, upper, work string) (string, bool) {
	for _, p := range []string{lower, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return "", false
		}
	}
	return "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work, true
}
