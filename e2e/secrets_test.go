package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-edge/shoal/cluster/pki"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// clusterSecrets are the bytes a stolen non-voter must not yield: the CA's
// private key (PEM, DER and its scalar) and the join secret.
type clusterSecrets map[string][]byte

// secretsOf reads the CA key from a voter's DATA/tls/ca.key (root-only)
// and the join secret from token.
func secretsOf(t *testing.T, voterDir, token string) clusterSecrets {
	t.Helper()
	path := filepath.Join(voterDir, "tls", "ca.key")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the voter holds no CA key: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	keyPEM, _ := os.ReadFile(path)
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := pki.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	return clusterSecrets{"CA key PEM": keyPEM, "CA key DER": b.Bytes, "CA key scalar": key.D.FillBytes(make([]byte, 32)), "join secret": tok.Secret}
}

// foundIn lists where, in any file under dir, a secret shows: in clear or
// base64 (as JSON carries bytes), whole or but for its last few characters.
func (s clusterSecrets) foundIn(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for what, secret := range s {
			for _, needle := range needles(secret) {
				if bytes.Contains(data, needle) {
					found = append(found, fmt.Sprintf("%s in %s", what, p))
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func needles(secret []byte) [][]byte {
	out := [][]byte{secret}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
		// The tail depends on what follows in a longer encoding.
		s := enc.EncodeToString(secret)
		out = append(out, []byte(s[:len(s)-4]))
	}
	return out
}

// A non-voter's whole data dir holds neither the CA's private key nor the
// join secret; the voter keeps the key in DATA/tls/ca.key. The bootstrap
// output names the credential's file instead of printing it, and shows the
// join command with the token in the environment.
func TestSecretsOnlyOnVoters(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "b", "--voters", "1")

	secrets := secretsOf(t, f.dirs["a"], f.token)
	// The search finds what is there.
	if len(secrets.foundIn(t, filepath.Join(f.dirs["a"], "tls"))) == 0 {
		t.Fatal("the search does not find the CA key in the voter's own ca.key")
	}
	if found := secrets.foundIn(t, f.dirs["b"]); len(found) > 0 {
		t.Errorf("the non-voter's data dir holds the cluster's secrets:\n%s", strings.Join(found, "\n"))
	}
	if _, err := os.Stat(filepath.Join(f.dirs["b"], "tls", "ca.key")); err == nil {
		t.Error("the non-voter has a ca.key")
	}
	if _, err := f.cli("b", "token"); err == nil || !strings.Contains(err.Error(), "admin credential") {
		t.Errorf("shoal token on the non-voter: %v", err)
	}

	out, err := os.ReadFile(f.lab.LogPath("a"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("shoal-admin1/")) {
		t.Errorf("the bootstrap output holds the admin credential:\n%s", out)
	}
	credPath := filepath.Join(f.dirs["a"], "tls", "admin.credential")
	if !bytes.Contains(out, []byte(credPath)) {
		t.Errorf("the bootstrap output does not name %s:\n%s", credPath, out)
	}
	if !bytes.Contains(out, []byte("SHOAL_JOIN="+f.token+" shoal up")) || bytes.Contains(out, []byte("--join "+f.token)) {
		t.Errorf("the bootstrap output does not show the join command with the token in the environment:\n%s", out)
	}
}

// A non-voter promoted to replace a dead voter receives the CA key and
// then admits a join on its own; before, it holds no secret, as the
// non-voter of a three-voter cluster.
func TestPromotedVoterGetsCAKey(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "--dead-voter-grace", "2s")
	f.bootstrap("a")
	f.join("b")
	f.join("c")
	voters := []string{"a", "b", "c"}
	f.waitFormed("a", voters, voters, 30*time.Second)
	f.join("d")
	st := f.waitFormed("a", []string{"a", "b", "c", "d"}, voters, 30*time.Second)
	for _, v := range voters {
		waitCAKey(t, f, v)
	}
	secrets := secretsOf(t, f.dirs["a"], f.token)
	if found := secrets.foundIn(t, f.dirs["d"]); len(found) > 0 {
		t.Errorf("the non-voter's data dir holds the cluster's secrets:\n%s", strings.Join(found, "\n"))
	}

	victim := "b"
	if st.Leader == "b" {
		victim = "c"
	}
	if err := f.lab.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		st, err := f.status("a")
		if err != nil {
			return err
		}
		if !strings.Contains(","+strings.Join(st.Voters, ",")+",", ",d,") {
			return fmt.Errorf("voters %v: d not promoted yet", st.Voters)
		}
		return nil
	})
	waitCAKey(t, f, "d")

	// A token that names d alone: d admits the join itself.
	tok, err := pki.ParseToken(f.token)
	if err != nil {
		t.Fatal(err)
	}
	tok.Addrs = []string{net.JoinHostPort(f.lab.IP("d"), "7947")}
	f.add("e")
	if err := f.lab.Start("e", f.upArgs("e", "e", tok.String()), nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		ns, err := f.nodes("d")
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.Name == "e" && n.State == "alive" {
				return nil
			}
		}
		return fmt.Errorf("e is not an alive member yet: %+v", ns)
	})
	log, _ := os.ReadFile(f.lab.LogPath("d"))
	if !bytes.Contains(log, []byte("admitted a node")) {
		t.Error("d's log does not record that it admitted e")
	}

	// The replaced voter comes back as a non-voter and deletes its copy.
	if err := f.lab.Restart(victim); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		ns, err := f.nodes("a")
		if err != nil {
			return err
		}
		for _, n := range ns {
			if n.Name == victim && (n.State != "alive" || n.Role != "non-voter") {
				return fmt.Errorf("%s is %s, %s: want alive, non-voter", victim, n.State, n.Role)
			}
		}
		if _, err := os.Stat(filepath.Join(f.dirs[victim], "tls", "ca.key")); err == nil {
			return fmt.Errorf("%s, no voter any more, still has its ca.key", victim)
		}
		return nil
	})
}

func waitCAKey(t *testing.T, f *fleet, name string) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, func() error {
		_, err := os.Stat(filepath.Join(f.dirs[name], "tls", "ca.key"))
		return err
	})
}

// `shoal token --rotate` makes a new join secret: the old token is refused
// as a wrong secret, the new one joins, and the nodes already joined keep
// working.
func TestTokenRotate(t *testing.T) {
	t.Parallel()
	f := voterAndNonVoterFleet(t, "b")
	old := f.token

	if _, err := f.cli("b", "token", "--rotate"); err == nil || !strings.Contains(err.Error(), "admin credential") {
		t.Errorf("shoal token --rotate on the non-voter: %v", err)
	}
	// With the admin credential the CLI takes it to the voter.
	viaB, err := f.adminCLI("b", "token", "--rotate")
	if err != nil {
		t.Fatalf("shoal token --rotate on the non-voter with the admin credential: %v", err)
	}
	if tok, err := tokenOf(viaB); err != nil || tok == old {
		t.Fatalf("token --rotate through the non-voter: %q, %v; want a new token", viaB, err)
	}
	rotated, err := tokenOf(f.mustCLI("a", "token", "--rotate"))
	if err != nil {
		t.Fatal(err)
	}
	if rotated == old {
		t.Fatal("--rotate printed the old token")
	}
	if now, err := tokenOf(f.mustCLI("a", "token")); err != nil || now != rotated {
		t.Fatalf("shoal token after the rotation: %q, %v; want %q", now, err, rotated)
	}

	f.add("x")
	out, err := f.lab.Exec("x", f.upArgs("x", "x", old)...)
	if err == nil {
		t.Fatalf("the old token joined:\n%s", out)
	}
	if !strings.Contains(string(out), "wrong join secret") {
		t.Errorf("the old token's refusal does not say why:\n%s", out)
	}

	f.token = rotated
	f.join("c")
	all := []string{"a", "b", "c"}
	f.waitFormed("a", all, all, 30*time.Second)
	if _, err := f.label("b", "b", "after=rotate"); err != nil {
		t.Fatalf("a write through a node joined before the rotation: %v", err)
	}
	f.waitLabel("c", "b", "after", "rotate", 15*time.Second)
}
