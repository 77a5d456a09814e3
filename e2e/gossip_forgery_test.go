package e2e

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/shoal-edge/shoal/internal/testutil"
)

// Three voters and a non-voter. The non-voter is a stolen device: with its
// gossip key it forges one memberlist message that declares a healthy
// voter dead at the highest incarnation, which the voter cannot refute
// (its answer wraps around to 0). The leader must not take the voter for
// gone, nor promote the thief in its place and hand it the CA key.
func TestForgedGossipDeathPromotesNoOne(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	nodes := map[string]*node{}
	var token string
	for _, name := range []string{"forge-a", "forge-b", "forge-c", "forge-d"} {
		n := newNode(t, name)
		n.args = append(n.args, "--voters", "3", "--dead-voter-grace", grace.String())
		if token != "" {
			n.args = append(n.args, "--join-file", n.writeFile("token", token))
		}
		n.start()
		if token == "" {
			var err error
			if token, err = tokenOf(n.must("token")); err != nil {
				t.Fatal(err)
			}
		}
		nodes[name] = n
	}
	a, thief := nodes["forge-a"], nodes["forge-d"]
	var st clusterStatus
	testutil.WaitFor(t, 60*time.Second, func() error {
		if err := thief.json(&st, "status", "-o", "json"); err != nil {
			return err
		}
		if st.Role != "non-voter" || len(st.Voters) != 3 || st.Leader == "" {
			return fmt.Errorf("forge-d's status: %+v", st)
		}
		return nil
	})
	voters := slices.Sorted(slices.Values(st.Voters))
	leader := nodes[st.Leader]
	var victim *node
	var victimName string
	for _, v := range voters {
		if v != st.Leader {
			victim, victimName = nodes[v], v
			break
		}
	}

	// The attack: one UDP packet to the leader's gossip port.
	key, err := os.ReadFile(filepath.Join(thief.dataDir, "tls", "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	sendForgedDeath(t, key, net.JoinHostPort("127.0.0.1", leader.flagValue("--gossip-port")), victimName)
	// The forgery is taken: the victim hears of its death and cannot
	// refute it.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(victim.log.String(), "Refuting a dead message") {
			return fmt.Errorf("%s has not heard of its forged death", victimName)
		}
		return nil
	})

	// Well past the grace and a few autopilot passes: nothing changes.
	end := time.Now().Add(4*grace + 12*time.Second)
	for time.Now().Before(end) {
		if err := a.json(&st, "status", "-o", "json"); err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(slices.Values(st.Voters)); !slices.Equal(got, voters) {
			t.Fatalf("voters after a forged gossip death of %s: %v, want %v", victimName, got, voters)
		}
		if _, err := os.Stat(filepath.Join(thief.dataDir, "tls", "ca.key")); err == nil {
			t.Fatal("the non-voter that forged gossip received the CA key")
		}
		time.Sleep(500 * time.Millisecond) // polling a state that must not change
	}
}

// sendForgedDeath sends memberlist's dead message about victim, at
// incarnation 2^32-1, encrypted with key (memberlist's encryption version
// 1: AES-GCM, no label), to the gossip address addr.
func sendForgedDeath(t *testing.T, key []byte, addr, victim string) {
	t.Helper()
	var msg bytes.Buffer
	msg.WriteByte(5) // memberlist's deadMsg
	dead := struct {
		Incarnation uint32
		Node, From  string
	}{0xffffffff, victim, "nobody"}
	if err := codec.NewEncoder(&msg, &codec.MsgpackHandle{}).Encode(&dead); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	pkt := gcm.Seal(append([]byte{1}, nonce...), nonce, msg.Bytes(), nil)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
}
