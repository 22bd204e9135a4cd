// Package wsguard hardens a listener whose connections carry SIP over
// WebSocket (RFC 7118) before they reach sipgo, which checks no Origin,
// answers no WebSocket ping and sets no read timeout.
//
// A guarded listener reads each connection's HTTP request itself. Upgrade
// requests from an allowed Origin are handed on (the request bytes replayed
// untouched, so sipgo performs the handshake); upgrades from other origins
// get 403; plain HTTP requests go to an optional http.Handler, so one port
// and one certificate serve both the web page and its SIP socket. Accepted
// connections get an idle timeout, answer WebSocket pings with pongs, and
// each source address may hold only so many at once.
package wsguard

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a guarded listener.
type Config struct {
	// AllowedOrigins lists the Origin header values (scheme://host[:port])
	// allowed to open a WebSocket, compared case-insensitively. A request
	// without Origin (not a browser) is allowed. Empty allows every
	// origin: only for development.
	AllowedOrigins []string
	// MaxPerIP caps the simultaneous connections from one source address.
	// Defaults to 32; negative disables the cap.
	MaxPerIP int
	// IdleTimeout closes a connection that has received nothing for this
	// long, including its WebSocket pings and SIP keep-alives. Defaults to
	// 15 minutes, longer than a browser's registration refresh.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds reading the HTTP request. Defaults to 10s.
	HandshakeTimeout time.Duration
	// HTTP serves requests that are not WebSocket upgrades. Nil answers
	// them 404.
	HTTP http.Handler
	// Logger defaults to slog.Default() with component=wsguard.
	Logger *slog.Logger
}

// Stats counts what the guard did.
type Stats struct {
	Accepted, RejectedOrigin, RejectedLimit, BadHandshake, HTTPRequests, IdleClosed, PingsAnswered uint64
	Open                                                                                           int64
}

// Listener is a guarded net.Listener.
type Listener struct {
	inner net.Listener
	cfg   Config
	log   *slog.Logger

	accepted chan net.Conn
	httpL    *chanListener
	httpSrv  *http.Server

	mu    sync.Mutex
	perIP map[netip.Addr]int

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	st struct {
		accepted, origin, limit, bad, http, idle, pings atomic.Uint64
		open                                            atomic.Int64
	}
}

// New starts guarding inner. Close stops it and closes inner.
func New(inner net.Listener, cfg Config) *Listener {
	if cfg.MaxPerIP == 0 {
		cfg.MaxPerIP = 32
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default().With("component", "wsguard")
	}
	l := &Listener{
		inner:    inner,
		cfg:      cfg,
		log:      cfg.Logger,
		accepted: make(chan net.Conn),
		perIP:    make(map[netip.Addr]int),
		done:     make(chan struct{}),
	}
	h := cfg.HTTP
	if h == nil {
		h = http.NotFoundHandler()
	}
	l.httpL = &chanListener{addr: inner.Addr(), ch: make(chan net.Conn), done: l.done}
	l.httpSrv = &http.Server{Handler: h, ReadHeaderTimeout: cfg.HandshakeTimeout}
	l.wg.Go(func() { l.httpSrv.Serve(l.httpL) })
	l.wg.Go(l.acceptLoop)
	return l
}

// Stats returns the guard's counters.
func (l *Listener) Stats() Stats {
	return Stats{
		Accepted: l.st.accepted.Load(), RejectedOrigin: l.st.origin.Load(), RejectedLimit: l.st.limit.Load(),
		BadHandshake: l.st.bad.Load(), HTTPRequests: l.st.http.Load(), IdleClosed: l.st.idle.Load(),
		PingsAnswered: l.st.pings.Load(), Open: l.st.open.Load(),
	}
}

// Accept returns the next WebSocket connection from an allowed origin.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, closes the inner listener and waits for the
// guard's goroutines. Connections already handed out stay open.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.httpSrv.Close()
		l.wg.Wait()
	})
	return err
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		l.wg.Go(func() { l.handshake(c) })
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// handshake reads the HTTP request and routes the connection.
func (l *Listener) handshake(c net.Conn) {
	ip := remoteIP(c)
	if !l.take(ip) {
		l.st.limit.Add(1)
		c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		c.Close()
		return
	}
	c.SetReadDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(c, 4096)
	var head bytes.Buffer
	upgrade, origin, ok := readHead(br, &head)
	if !ok {
		l.st.bad.Add(1)
		if head.Len() > 0 {
			// Something arrived but not an HTTP request: say so before
			// hanging up, as an HTTP server would.
			c.SetWriteDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		}
		l.release(ip)
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	// Whatever was read, and whatever the buffer holds beyond it, is
	// replayed to the next reader.
	buffered, _ := br.Peek(br.Buffered())
	replay := append(head.Bytes(), buffered...)
	if !upgrade {
		l.st.http.Add(1)
		rc := &replayConn{Conn: c, pending: replay, onClose: func() { l.release(ip) }}
		select {
		case l.httpL.ch <- rc:
		case <-l.done:
			rc.Close()
		}
		return
	}
	if !l.originAllowed(origin) {
		l.st.origin.Add(1)
		l.log.Debug("WebSocket origin refused", "origin", origin, "remote", c.RemoteAddr())
		c.Write([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		l.release(ip)
		c.Close()
		return
	}
	gc := newGuardedConn(c, replay, l, ip)
	select {
	case l.accepted <- gc:
		l.st.accepted.Add(1)
		l.st.open.Add(1)
	case <-l.done:
		gc.Close()
	}
}

// readHead reads the request line and headers into head, reporting
// whether it is a WebSocket upgrade and its Origin.
func readHead(br *bufio.Reader, head *bytes.Buffer) (upgrade bool, origin string, ok bool) {
	for n := 0; n < 100; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false, "", false
		}
		head.Write(line)
		if head.Len() > 16<<10 {
			return false, "", false
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			return upgrade, origin, n > 0
		}
		name, value, found := strings.Cut(s, ":")
		if !found {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "upgrade":
			upgrade = strings.EqualFold(value, "websocket")
		case "origin":
			origin = value
		}
	}
	return false, "", false
}

func (l *Listener) originAllowed(origin string) bool {
	if origin == "" || len(l.cfg.AllowedOrigins) == 0 {
		return true
	}
	for _, o := range l.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}

func (l *Listener) take(ip netip.Addr) bool {
	if l.cfg.MaxPerIP < 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip] >= l.cfg.MaxPerIP {
		return false
	}
	l.perIP[ip]++
	return true
}

func (l *Listener) release(ip netip.Addr) {
	if l.cfg.MaxPerIP < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// replayConn returns pending bytes before reading from the connection.
type replayConn struct {
	net.Conn
	pending []byte
	onClose func()
	once    sync.Once
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *replayConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}

// chanListener hands connections to http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }
