package registrar

import (
	"net"
	"net/netip"
	"strings"
	"sync"
)

// ConnClosed tells the registrar that the connection of transport ("tcp",
// "tls", "ws", "wss") from remote is gone: the bindings made over it are
// unreachable and are removed (Removed events, reason "connection closed").
// TrackListener calls it; call it yourself when you own the connections.
// It returns how many bindings were removed.
func (r *Registrar) ConnClosed(transport string, remote netip.AddrPort) int {
	if r.cfg.NotConnectionBound {
		return 0
	}
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	return r.table.connClosed(connKey{strings.ToLower(transport), remote}, "connection closed")
}

// TrackListener wraps l so that when any connection it accepted closes, the
// bindings registered over it are removed (Kamailio's handle_lost_tcp).
// Give the wrapped listener to sipgo (srv.ServeTCP, ServeTLS, ServeWS,
// ServeWSS); transport names it as the registrar records it: "tcp", "tls",
// "ws" or "wss".
func (r *Registrar) TrackListener(l net.Listener, transport string) net.Listener {
	return &trackedListener{Listener: l, r: r, transport: strings.ToLower(transport)}
}

type trackedListener struct {
	net.Listener
	r         *Registrar
	transport string
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// A new connection may reuse a closed one's address and port.
	l.r.table.connOpened(connKey{l.transport, addrPortOf(c.RemoteAddr())})
	return &trackedConn{Conn: c, l: l}, nil
}

// trackedConn reports its end once: when it is closed, or when a read
// fails (the peer went away and sipgo has not closed it yet).
type trackedConn struct {
	net.Conn
	l    *trackedListener
	once sync.Once
}

func (c *trackedConn) gone() {
	c.once.Do(func() {
		c.l.r.ConnClosed(c.l.transport, addrPortOf(c.Conn.RemoteAddr()))
	})
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && n == 0 {
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			c.gone()
		}
	}
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.gone()
	return err
}
