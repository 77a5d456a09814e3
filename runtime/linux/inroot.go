package linux

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinks = 40

// resolveInRoot returns root joined with target after resolving every
// symlink in target as the container will see it: relative to its
// directory, absolute ones from root, ".." never above root. Components that
// do not exist are kept as they are, to be created. The image controls what
// lies under root; a mount point resolved naively on the host could be a
// symlink to the host's /etc.
func resolveInRoot(root, target string) (string, error) {
	cur := "/" // resolved so far, relative to root
	rest := target
	links := 0
	missing := false
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch part {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, part)
		if missing {
			cur = next
			continue
		}
		fi, err := os.Lstat(filepath.Join(root, next))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = true
			cur = next
			continue
		case err != nil:
			return "", fmt.Errorf("resolve %s in the container: %w", target, err)
		case fi.Mode()&fs.ModeSymlink == 0:
			cur = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", fmt.Errorf("resolve %s in the container: %w", target, syscall.ELOOP)
		}
		dest, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolve %s in the container: %w", target, err)
		}
		if path.IsAbs(dest) {
			cur = "/"
		}
		rest = dest + "/" + rest
	}
	return filepath.Join(root, cur), nil
}
