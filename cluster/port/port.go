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
package port

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// handshakeTimeout bounds a handshake so a silent client holds nothing;
// maxHandshakes bounds how many run at once, so that strangers cannot
// starve the nodes of the port.
const (
	handshakeTimeout = 10 * time.Second
	maxHandshakes    = 64
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

	cancel     context.CancelFunc
	wg         sync.WaitGroup
	handshakes chan struct{} // one token per handshake in flight

	mu     sync.Mutex // guards following
	protos map[string]*listener
	closed bool
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
	p := &Port{cfg: cfg, ln: ln, ctx: ctx, cancel: cancel, protos: map[string]*listener{}, handshakes: make(chan struct{}, maxHandshakes)}
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
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				p.cfg.Logger.Error("cluster port: accept", "err", err)
			}
			return
		}
		select {
		case p.handshakes <- struct{}{}:
		default:
			p.cfg.Logger.Warn("cluster port: too many handshakes at once: dropping a connection", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.dispatch(c)
		}()
	}
}

func (p *Port) dispatch(c net.Conn) {
	tc := tls.Server(c, p.cfg.TLS)
	ctx, cancel := context.WithTimeout(p.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	<-p.handshakes
	if err != nil {
		p.cfg.Logger.Debug("cluster port: handshake", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	cs := tc.ConnectionState()
	proto := cs.NegotiatedProtocol
	if p.cfg.Allow != nil && !p.cfg.Allow(proto, cs) {
		p.cfg.Logger.Warn("cluster port: refused a peer without the right credentials", "remote", c.RemoteAddr(), "protocol", proto)
		if p.cfg.Refuse != nil {
			tc.SetDeadline(time.Now().Add(time.Second))
			p.cfg.Refuse(proto, tc)
		}
		tc.Close()
		return
	}
	if p.cfg.Route != nil {
		proto = p.cfg.Route(proto)
	}
	p.mu.Lock()
	l := p.protos[proto]
	p.mu.Unlock()
	// Not the *tls.Conn itself: net/http refuses a TLS connection whose
	// ALPN protocol it does not know, and ours are HTTP/1.1 underneath.
	if l == nil || !l.hand(p.ctx, &Conn{Conn: tc, State: cs}) {
		tc.Close()
	}
}

// Conn is a connection a protocol listener accepts: TLS, handshake done.
type Conn struct {
	net.Conn
	State tls.ConnectionState
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
