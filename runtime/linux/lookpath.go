package linux

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
)

// lookPath finds the program to exec for file the way a shell does, but in
// the container's filesystem and PATH, and words failures for an operator:
// the message says that the file is missing in the container, not on the
// host. stat is os.Stat, injected for tests.
func lookPath(file, path string, stat func(string) (fs.FileInfo, error)) (string, error) {
	if strings.Contains(file, "/") {
		if err := checkExecutable(file, stat); err != nil {
			return "", err
		}
		return file, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "." // an empty PATH entry means the working directory
		}
		p := dir + "/" + file
		err := checkExecutable(p, stat)
		if err == nil {
			return p, nil
		}
		if denied == nil && errors.Is(err, syscall.EACCES) {
			denied = err
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", &InitError{
		Msg:   fmt.Sprintf("exec %s: executable file not found in PATH %q in the container", file, path),
		Errno: syscall.ENOENT,
	}
}

func checkExecutable(p string, stat func(string) (fs.FileInfo, error)) error {
	fi, err := stat(p)
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			errno = syscall.ENOENT
		}
		if errno == syscall.ENOENT || errno == syscall.ENOTDIR {
			return &InitError{Msg: fmt.Sprintf("exec %s: no such file or directory in the container", p), Errno: syscall.ENOENT}
		}
		return &InitError{Msg: fmt.Sprintf("exec %s: %v", p, err), Errno: errno}
	}
	if fi.IsDir() {
		return &InitError{Msg: fmt.Sprintf("exec %s: is a directory", p), Errno: syscall.EACCES}
	}
	if fi.Mode()&0o111 == 0 {
		return &InitError{Msg: fmt.Sprintf("exec %s: permission denied (not executable)", p), Errno: syscall.EACCES}
	}
	return nil
}
