// Package port owns the cluster port: one TCP listener speaking TLS 1.3,
// whose connections are handed by their ALPN protocol to Raft, the API, the
// node-to-node calls or the join handler, each seeing an ordinary
// net.Listener. One port is all a node needs to reach another (with gossip
// beside it), so a dial-out transport can later carry the same protocols.
//
// # Basics
//
// Listen opens the port and starts accepting; Listener(proto) must be
// called for every protocol before a peer dials it, otherwise its
// connections are closed. Allow decides, after the handshake, whether the
// peer may speak the protocol it chose. Close stops accepting, closes every
// protocol listener and waits for handshakes in flight.
//
// # Strangers
//
// Anyone may connect to the port, so what a connection can hold before it
// has proved anything is bounded: each handshake runs on its own goroutine
// (a silent client never holds up the next one), within handshakeTimeout,
// with at most maxPerSource in flight from one source address (an IPv4
// address or an IPv6 /64) and maxHandshakes in all. A connection over the
// limit of its source is closed at once; one that finds every slot taken
// takes the slot of the oldest handshake of the source with the most in
// flight, when that is more than its own source has: a stranger holding
// the slots from many addresses cannot keep a node or client at another
// one out. Running out of file descriptors pauses
// accepting with a backoff, never ends it.
//
// A peer that proved itself is bounded too, for a certificate can be
// stolen with a device: one client certificate holds at most maxPerPeer
// connections of one protocol at a time (a node's Raft pool, its calls, a
// few `logs -f` of an admin); past that its new connections are closed
// after the handshake. The port's warnings pass
// through a rate limit, so a flood of refused connections writes a few
// lines and a count.
package port

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/shoal-edge/shoal/internal/ratelog"
)

// handshakeTimeout bounds a handshake so a silent client holds little: a
// TLS 1.3 handshake is one round trip, a few seconds cover a slow link.
// maxPerSource bounds the handshakes in flight from one source address, so
// that one stranger cannot take the slots of the nodes and clients
// elsewhere; maxHandshakes bounds them in all. Nodes behind one NAT share a
// source: a handshake takes milliseconds, so sixteen at once is plenty.
const (
	handshakeTimeout = 3 * time.Second
	maxHandshakes    = 256
	maxPerSource     = 16
	maxPerPeer       = 64
)

// Backoff after a failed accept (out of file descriptors): retried, never
// given up, so that a flood that exhausts them does not close the port.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// Config describes a cluster port.
type Config struct {
	Addr string // host:port to listen on
	TLS  *tls.Config
	// Allow says whether the peer of a finished handshake may speak proto.
	Allow func(proto string, cs tls.ConnectionState) bool
	// Route, if set, names the listener of a negotiated protocol (several
	// protocols may share one).
	Route func(proto string) string
	// Refuse, if set, may tell a peer that Allow turned down why, before
	// its connection is closed.
	Refuse func(proto string, c net.Conn)
	Logger *slog.Logger
}

// Port is a listening cluster port.
type Port struct {
	cfg Config
	ln  net.Listener
	ctx context.Context

	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *slog.Logger
	limit  *ratelog.Handler // log's rate limit

	mu        sync.Mutex // guards following
	protos    map[string]*listener
	closed    bool
	inFlight  int                   // handshakes
	perSource map[string][]*pending // handshakes in flight by source, oldest first
	perPeer   map[peerKey]int       // connections handed out, by protocol and client certificate
}

// peerKey is a client certificate (its digest) speaking a protocol.
type peerKey struct {
	proto string
	cert  [sha256.Size]byte
}

// pending is a connection holding a handshake slot.
type pending struct {
	c       net.Conn
	src     string
	evicted bool // its slot was given to a newer connection
}

// Listen opens the port and starts accepting.
func Listen(cfg Config) (*Port, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	limit := ratelog.New(cfg.Logger.Handler(), ratelog.DefaultConfig())
	p := &Port{cfg: cfg, ln: ln, ctx: ctx, cancel: cancel, log: slog.New(limit), limit: limit,
		protos: map[string]*listener{}, perSource: map[string][]*pending{}, perPeer: map[peerKey]int{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address the port listens on.
func (p *Port) Addr() net.Addr { return p.ln.Addr() }

// Listener returns the listener of proto's connections.
func (p *Port) Listener(proto string) net.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.protos[proto]; ok {
		return l
	}
	return p.newListener(proto)
}

// Renew closes proto's listener, if any, and returns a new one: for a user
// that closed its listener and starts again (Raft restarted).
func (p *Port) Renew(proto string) net.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.protos[proto]; ok {
		l.close()
	}
	return p.newListener(proto)
}

func (p *Port) newListener(proto string) *listener {
	l := &listener{addr: p.ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	if p.closed {
		l.close()
	}
	p.protos[proto] = l
	return l
}

func (p *Port) accept() {
	defer p.wg.Done()
	backoff := time.Duration(0)
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			p.log.Error("cluster port: accept", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-p.ctx.Done():
				return
			}
		}
		backoff = 0
		pd, why := p.admit(c)
		if why != "" {
			p.log.Warn("cluster port: "+why+": dropping a connection", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			tc, cs, ok := p.handshake(c)
			p.release(pd)
			if ok {
				p.dispatch(tc, cs)
			}
		}()
	}
}

// admit takes a handshake slot for c, or says which limit is reached.
// With every slot taken, the oldest handshake of the busiest source gives
// its slot up (its connection is closed) if that source holds more than
// c's: a handshake takes milliseconds, a silent stranger's takes the whole
// timeout, so the stranger's are the ones that go.
func (p *Port) admit(c net.Conn) (*pending, string) {
	src := sourceOf(c.RemoteAddr())
	p.mu.Lock()
	defer p.mu.Unlock()
	own := len(p.perSource[src])
	if own >= maxPerSource {
		return nil, "too many handshakes at once from one address"
	}
	if p.inFlight >= maxHandshakes {
		var busiest string
		for s, pds := range p.perSource {
			if len(pds) > len(p.perSource[busiest]) {
				busiest = s
			}
		}
		if len(p.perSource[busiest]) <= own {
			return nil, "too many handshakes at once"
		}
		victim := p.perSource[busiest][0]
		p.remove(victim)
		victim.evicted = true
		victim.c.Close() // its handshake fails and its goroutine ends
	}
	pd := &pending{c: c, src: src}
	p.inFlight++
	p.perSource[src] = append(p.perSource[src], pd)
	return pd, ""
}

// release gives back the slot admit took, unless a newer connection took
// it already.
func (p *Port) release(pd *pending) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !pd.evicted {
		p.remove(pd)
	}
}

// remove takes pd out of the handshakes in flight; p.mu is held.
func (p *Port) remove(pd *pending) {
	pds := slices.DeleteFunc(p.perSource[pd.src], func(o *pending) bool { return o == pd })
	if len(pds) == 0 {
		delete(p.perSource, pd.src)
	} else {
		p.perSource[pd.src] = pds
	}
	p.inFlight--
}

// sourceOf is the address the per-source limit counts by: the IP, or an
// IPv6 address's /64, which one host usually holds whole.
func sourceOf(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String()
}

// handshake runs the TLS handshake and asks Allow; ok says whether the
// connection goes on to its protocol. It runs while the connection holds
// its handshake slot, a refusal included, so that refused peers are
// bounded like the rest.
func (p *Port) handshake(c net.Conn) (tc *tls.Conn, cs tls.ConnectionState, ok bool) {
	tc = tls.Server(c, p.cfg.TLS)
	ctx, cancel := context.WithTimeout(p.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.log.Debug("cluster port: handshake", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return nil, cs, false
	}
	cs = tc.ConnectionState()
	proto := cs.NegotiatedProtocol
	if p.cfg.Allow != nil && !p.cfg.Allow(proto, cs) {
		p.log.Warn("cluster port: refused a peer without the right credentials", "remote", c.RemoteAddr(), "protocol", proto)
		if p.cfg.Refuse != nil {
			tc.SetDeadline(time.Now().Add(time.Second))
			p.cfg.Refuse(proto, tc)
		}
		tc.Close()
		return nil, cs, false
	}
	return tc, cs, true
}

// dispatch hands a connection to the listener of its protocol.
func (p *Port) dispatch(tc *tls.Conn, cs tls.ConnectionState) {
	proto := cs.NegotiatedProtocol
	if p.cfg.Route != nil {
		proto = p.cfg.Route(proto)
	}
	c := &Conn{Conn: tc, State: cs}
	if len(cs.PeerCertificates) > 0 {
		key := peerKey{proto: proto, cert: sha256.Sum256(cs.PeerCertificates[0].Raw)}
		p.mu.Lock()
		full := p.perPeer[key] >= maxPerPeer
		if !full {
			p.perPeer[key]++
			c.release = func() { p.releasePeer(key) }
		}
		p.mu.Unlock()
		if full {
			p.log.Warn("cluster port: too many connections from one certificate: dropping one", "remote", tc.RemoteAddr(),
				"protocol", proto, "name", cs.PeerCertificates[0].Subject.CommonName)
			tc.Close()
			return
		}
	}
	p.mu.Lock()
	l := p.protos[proto]
	p.mu.Unlock()
	// Not the *tls.Conn itself: net/http refuses a TLS connection whose
	// ALPN protocol it does not know, and ours are HTTP/1.1 underneath.
	if l == nil || !l.hand(p.ctx, c) {
		c.Close()
	}
}

// releasePeer gives back a connection of key's.
func (p *Port) releasePeer(key peerKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.perPeer[key]--; p.perPeer[key] <= 0 {
		delete(p.perPeer, key)
	}
}

// Conn is a connection a protocol listener accepts: TLS, handshake done.
type Conn struct {
	net.Conn
	State tls.ConnectionState

	once    sync.Once
	release func() // gives back its peer's share, if it took one
}

// Close closes the connection and gives back its place among its peer's.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// Close stops accepting and closes every protocol listener; connections
// already handed out belong to their protocol.
func (p *Port) Close() error {
	p.cancel()
	err := p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, l := range p.protos {
		l.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.limit.Close()
	return err
}

// listener is one protocol's view of the port.
type listener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

// hand gives c to an Accept, unless the listener or the port closes first.
func (l *listener) hand(ctx context.Context, c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
	case <-ctx.Done():
	}
	return false
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) close() { l.once.Do(func() { close(l.done) }) }

func (l *listener) Close() error {
	l.close()
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }
