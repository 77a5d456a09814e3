package linux

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// writeEtcFiles writes the container's /etc/hosts, /etc/hostname and (with
// a network namespace of its own) /etc/resolv.conf into its state
// directory dir and returns the read-only bind mounts that put them, or
// the host's resolv.conf with the host's network, over the image's. They
// come before the Spec's own mounts, so a volume over one of them wins.
func writeEtcFiles(dir string, s Spec) ([]Mount, error) {
	var host io.Reader
	if s.HostNetwork {
		f, err := os.Open(hostHosts)
		switch {
		case err == nil:
			defer f.Close()
			host = f
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("/etc/hosts: %w", err)
		}
	}
	mounts := make([]Mount, 0, 3)
	hosts := filepath.Join(dir, hostsFile)
	if err := writeFile(hosts, func(w io.Writer) error { return writeHosts(w, s.Hostname, host) }); err != nil {
		return nil, fmt.Errorf("/etc/hosts: %w", err)
	}
	mounts = append(mounts, Mount{Source: hosts, Target: "/etc/hosts", ReadOnly: true})

	name := filepath.Join(dir, hostnameFile)
	if err := writeFile(name, func(w io.Writer) error { _, err := io.WriteString(w, s.Hostname+"\n"); return err }); err != nil {
		return nil, fmt.Errorf("/etc/hostname: %w", err)
	}
	mounts = append(mounts, Mount{Source: name, Target: "/etc/hostname", ReadOnly: true})

	if s.HostNetwork {
		// The host's resolvers, loopback ones included, are the
		// container's: bind the host's file so its edits show.
		if _, err := os.Stat(hostResolvConf); err == nil {
			return append(mounts, Mount{Source: hostResolvConf, Target: "/etc/resolv.conf", ReadOnly: true}), nil
		}
	}
	conf, err := containerResolvConf(s.HostNetwork)
	if err != nil {
		return nil, fmt.Errorf("/etc/resolv.conf: %w", err)
	}
	resolv := filepath.Join(dir, resolvConfFile)
	if err := writeFile(resolv, func(w io.Writer) error { _, err := w.Write(conf); return err }); err != nil {
		return nil, fmt.Errorf("/etc/resolv.conf: %w", err)
	}
	return append(mounts, Mount{Source: resolv, Target: "/etc/resolv.conf", ReadOnly: true}), nil
}

// containerResolvConf is the resolv.conf written for a container: the
// host's minus loopback nameservers, from systemd-resolved's upstream list
// when the host's names only its stub. With the host's network (a host
// without a resolv.conf), an empty one: glibc then asks loopback, as the
// host does.
func containerResolvConf(hostNetwork bool) ([]byte, error) {
	if hostNetwork {
		return []byte("# Written by shoal: the host has no /etc/resolv.conf.\n"), nil
	}
	var first []byte
	for _, p := range []string{hostResolvConf, resolvedUpstream} {
		b, err := readBounded(p, maxHostResolvConf)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		conf, ok := bridgeResolvConf(b)
		if ok {
			return conf, nil
		}
		if first == nil {
			first = conf
		}
	}
	if first == nil {
		first, _ = bridgeResolvConf(nil)
	}
	return first, nil
}

// readBounded reads the file p, refusing one larger than limit bytes.
func readBounded(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, limit)
	}
	return b, nil
}

// writeFile creates p (mode 0644: users other than root in the container
// read it) with what write puts in it.
func writeFile(p string, write func(io.Writer) error) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	// Whatever the daemon's umask.
	err = f.Chmod(0o644)
	if err == nil {
		err = write(f)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// removeEtcFiles removes what writeEtcFiles wrote in dir; missing files
// are fine.
func removeEtcFiles(dir string) error {
	var errs []error
	for _, name := range []string{hostsFile, hostnameFile, resolvConfFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
