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
	"sync/atomic"
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

// Forty members announced with the gossip key whose cluster port takes
// connections and never answers: the leader checks each one's certificate
// before it counts, and must not hold its loop (the scheduler among it)
// three seconds for each.
func TestForgedMembersDoNotStallTheLeader(t *testing.T) {
	t.Parallel()
	n := newNode(t, "stall-a")
	n.start()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var dialled atomic.Int32
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
			dialled.Add(1)
		}
	}()
	key, err := os.ReadFile(filepath.Join(n.dataDir, "tls", "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	gossip := net.JoinHostPort("127.0.0.1", n.flagValue("--gossip-port"))
	for i := range 40 {
		meta := fmt.Sprintf(`{"id":"fake%02d","arch":"amd64","os":"linux","port":%d}`, i, silent.Addr().(*net.TCPAddr).Port)
		alive := struct {
			Incarnation uint32
			Node        string
			Addr        []byte
			Port        uint16
			Meta        []byte
			Vsn         []uint8
		}{1, fmt.Sprintf("fake%02d", i), net.IPv4(127, 0, 0, 1).To4(), 1, []byte(meta), []uint8{1, 5, 2, 0, 0, 0}}
		sendGossip(t, key, gossip, 4 /* memberlist's aliveMsg */, &alive)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if dialled.Load() == 0 {
			return fmt.Errorf("the leader has not dialled a forged member yet")
		}
		return nil
	})
	began := time.Now()
	n.must("apply", "-f", n.writeFile("app.yaml", "name: web\nimage: registry.invalid/web:1\n"))
	testutil.WaitFor(t, 15*time.Second, func() error {
		if ps := n.ps(); len(ps) != 1 {
			return fmt.Errorf("instances %s after the apply: %+v", time.Since(began).Round(time.Second), ps)
		}
		return nil
	})
	n.must("rm", "web")
}

// sendForgedDeath sends memberlist's dead message about victim, at
// incarnation 2^32-1, encrypted with key, to the gossip address addr.
func sendForgedDeath(t *testing.T, key []byte, addr, victim string) {
	t.Helper()
	dead := struct {
		Incarnation uint32
		Node, From  string
	}{0xffffffff, victim, "nobody"}
	sendGossip(t, key, addr, 5 /* memberlist's deadMsg */, &dead)
}

// sendGossip sends one memberlist message of type typ, encrypted with key
// (memberlist's encryption version 1: AES-GCM, no label), to addr.
func sendGossip(t *testing.T, key []byte, addr string, typ byte, v any) {
	t.Helper()
	var msg bytes.Buffer
	msg.WriteByte(typ)
	if err := codec.NewEncoder(&msg, &codec.MsgpackHandle{}).Encode(v); err != nil {
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
