package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/shoal-edge/shoal/cluster/pki"
)

// A stolen non-voter's certificate cannot speak Raft: hashicorp/raft would
// take an AppendEntries of a higher term from anyone and follow its
// sender, so the voter refuses the connection itself. The voter's own
// certificate carries the voter marker and is answered. A non-voter
// cannot be recovered either: it could not lead.
func TestNonVoterCannotSpeakRaft(t *testing.T) {
	t.Parallel()
	a, b := voterAndNonVoter(t, "raftv")
	if n := certOf(t, a.dataDir); !n.Voter {
		t.Errorf("the voter's node.crt has no voter marker: %+v", n)
	}
	if n := certOf(t, b.dataDir); n.Voter {
		t.Errorf("the non-voter's node.crt has the voter marker: %+v", n)
	}
	var before clusterStatus
	if err := a.json(&before, "status", "-o", "json"); err != nil {
		t.Fatal(err)
	}
	aPort := portOf(t, a)

	// The voter's own certificate is answered: the wire format is right.
	// Term 0 is older than any, so the leader only says its term.
	resp, err := appendEntries(t, a.dataDir, aPort, &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("x"), Addr: []byte("x")},
	})
	if err != nil || resp.Term != before.Term || resp.Success {
		t.Fatalf("AppendEntries of term 0 with the voter's certificate: %+v, %v; want the term %d, refused", resp, err, before.Term)
	}

	// The attack: b claims to lead at a far higher term.
	bID := nodeID(t, b.dataDir)
	forged := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(bID), Addr: []byte(fmt.Sprintf("%s@127.0.0.1:%d", bID, portOf(t, b)))},
		Term:      before.Term + 1_000_000,
	}
	if resp, err := appendEntries(t, b.dataDir, aPort, forged); err == nil {
		t.Errorf("the voter answered a forged AppendEntries sent with a non-voter's certificate: %+v", resp)
	}
	var after clusterStatus
	if err := a.json(&after, "status", "-o", "json"); err != nil {
		t.Fatal(err)
	}
	if after.Term != before.Term || after.Leader != "raftv-a" {
		t.Errorf("after the forged AppendEntries: term %d leader %q, want term %d leader raftv-a", after.Term, after.Leader, before.Term)
	}

	b.stop()
	if out, errOut, code := b.shoal("recover", "--force"); code == 0 || !strings.Contains(errOut, "CA key") {
		t.Errorf("recover on a non-voter: exit %d\n%s%s", code, out, errOut)
	}
}

// certOf is who node dataDir's certificate names.
func certOf(t *testing.T, dataDir string) pki.NodeIdentity {
	t.Helper()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dataDir, "tls", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	id, err := pki.NewIdentity(read("node.crt"), read("node.key"), read("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return id.Node()
}

// appendEntries sends req to the Raft protocol of the cluster port at
// 127.0.0.1:port as hashicorp/raft's network transport does (a type byte,
// then msgpack), with node dataDir's certificate, and reads the answer.
func appendEntries(t *testing.T, dataDir string, port int, req *raft.AppendEntriesRequest) (*raft.AppendEntriesResponse, error) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dataDir, "tls", "node.crt"), filepath.Join(dataDir, "tls", "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{pki.RaftProto(0)}, MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true} // the thief does not care whom it reaches
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if got := c.ConnectionState().NegotiatedProtocol; got != pki.RaftProto(0) {
		t.Fatalf("negotiated %q, want %q", got, pki.RaftProto(0))
	}
	w := bufio.NewWriter(c)
	w.WriteByte(0) // AppendEntries
	if err := codec.NewEncoder(w, &codec.MsgpackHandle{}).Encode(req); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	dec := codec.NewDecoder(bufio.NewReader(c), &codec.MsgpackHandle{})
	var rpcErr string
	var resp raft.AppendEntriesResponse
	if err := dec.Decode(&rpcErr); err != nil {
		return nil, err
	}
	if err := dec.Decode(&resp); err != nil {
		return nil, err
	}
	if rpcErr != "" {
		return &resp, fmt.Errorf("rpc error: %s", rpcErr)
	}
	return &resp, nil
}
