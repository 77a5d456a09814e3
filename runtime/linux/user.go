package linux

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// execUser is who the program runs as.
type execUser struct {
	UID, GID uint32
	Groups   []uint32 // supplementary
	Home     string
}

// checkUserSpec checks the form of a Spec.User without the image's files.
func checkUserSpec(spec string) error {
	if spec == "" {
		return nil
	}
	u, g, hasGroup := strings.Cut(spec, ":")
	if u == "" || hasGroup && (g == "" || strings.Contains(g, ":")) {
		return fmt.Errorf("user %q: want uid, uid:gid, name or name:group", spec)
	}
	return nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// resolveUser resolves spec ("uid", "uid:gid", "name", "name:group"; ""
// is root) with the container's /etc/passwd and /etc/group, either of which
// may be nil when the image has none. As in Docker: a uid without a passwd
// entry gets gid 0 and home /; supplementary groups are the groups that list
// the user's name.
func resolveUser(spec string, passwd, group io.Reader) (execUser, error) {
	if err := checkUserSpec(spec); err != nil {
		return execUser{}, err
	}
	if spec == "" {
		spec = "0"
	}
	users, err := parsePasswd(passwd)
	if err != nil {
		return execUser{}, fmt.Errorf("/etc/passwd: %w", err)
	}
	groups, err := parseGroup(group)
	if err != nil {
		return execUser{}, fmt.Errorf("/etc/group: %w", err)
	}
	uSpec, gSpec, hasGroup := strings.Cut(spec, ":")
	u := execUser{Home: "/"}
	var name string
	if id, ok := parseID(uSpec); ok {
		u.UID = id
		for _, e := range users {
			if e.uid == id {
				name, u.GID, u.Home = e.name, e.gid, e.home
				break
			}
		}
	} else {
		found := false
		for _, e := range users {
			if e.name == uSpec {
				name, u.UID, u.GID, u.Home, found = e.name, e.uid, e.gid, e.home, true
				break
			}
		}
		if !found {
			return execUser{}, fmt.Errorf("user %q not found in the container's /etc/passwd", uSpec)
		}
	}
	if hasGroup {
		if id, ok := parseID(gSpec); ok {
			u.GID = id
		} else {
			found := false
			for _, g := range groups {
				if g.name == gSpec {
					u.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return execUser{}, fmt.Errorf("group %q not found in the container's /etc/group", gSpec)
			}
		}
	}
	if name != "" {
		for _, g := range groups {
			for _, m := range g.members {
				if m == name && g.gid != u.GID {
					u.Groups = append(u.Groups, g.gid)
					break
				}
			}
		}
	}
	if u.Home == "" {
		u.Home = "/"
	}
	return u, nil
}

// parseID accepts a decimal id; -1 (0xffffffff) means "no change" to the
// kernel and is refused.
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0xffffffff {
		return 0, false
	}
	return uint32(n), true
}

// parsePasswd reads name:password:uid:gid:gecos:home:shell lines, skipping
// comments and malformed lines as libc does.
func parsePasswd(r io.Reader) ([]passwdEntry, error) {
	var out []passwdEntry
	err := eachLine(r, func(f []string) {
		if len(f) < 6 {
			return
		}
		uid, ok1 := parseID(f[2])
		gid, ok2 := parseID(f[3])
		if ok1 && ok2 && f[0] != "" {
			out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
		}
	})
	return out, err
}

// parseGroup reads name:password:gid:member,member lines.
func parseGroup(r io.Reader) ([]groupEntry, error) {
	var out []groupEntry
	err := eachLine(r, func(f []string) {
		if len(f) < 3 {
			return
		}
		gid, ok := parseID(f[2])
		if !ok || f[0] == "" {
			return
		}
		g := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					g.members = append(g.members, m)
				}
			}
		}
		out = append(out, g)
	})
	return out, err
}

func eachLine(r io.Reader, fn func([]string)) error {
	if r == nil {
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return sc.Err()
}
