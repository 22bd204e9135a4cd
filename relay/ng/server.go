package ng

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/talkpad/talkpad/relay"
)

// Relay is what the ng server drives; *relay.Relay satisfies it.
type Relay interface {
	Offer(ctx context.Context, req relay.OfferRequest) ([]byte, error)
	Answer(ctx context.Context, req relay.AnswerRequest) ([]byte, error)
	Delete(ctx context.Context, req relay.DeleteRequest) error
	Query(ctx context.Context, callID string) (relay.SessionStats, error)
	Sessions() []string
}

var _ Relay = (*relay.Relay)(nil)

// ErrServerClosed is returned by Serve after Close or context cancellation.
var ErrServerClosed = errors.New("ng: server closed")

// Config configures a Server.
type Config struct {
	// Relay executes the commands. Required.
	Relay Relay
	// RetransmitWindow is how long a response is kept to answer a
	// retransmitted request (same cookie) without running it again: SIP
	// proxies resend after a second without a reply, and running an offer
	// twice would re-arm latching. Defaults to 30s.
	RetransmitWindow time.Duration
	// Logger defaults to slog.Default() with component=relay/ng.
	Logger *slog.Logger
}

// Server answers ng commands on a datagram socket.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	cache  map[string]cached
	purged time.Time
	conns  map[net.PacketConn]struct{}
	closed bool

	requests, errors uint64
}

type cached struct {
	resp []byte
	at   time.Time
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Relay == nil {
		return nil, errors.New("ng: Config.Relay is required")
	}
	if cfg.RetransmitWindow == 0 {
		cfg.RetransmitWindow = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default().With("component", "relay/ng")
	}
	return &Server{cfg: cfg, log: cfg.Logger, cache: map[string]cached{}, conns: map[net.PacketConn]struct{}{}}, nil
}

// Serve reads commands from conn and answers them until ctx is done or Close
// is called; then it closes conn and returns ErrServerClosed. Commands run one
// at a time, in arrival order, which keeps offer/answer of one call ordered.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return ErrServerClosed
	}
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("ng: read: %w", err)
		}
		resp := s.Handle(ctx, buf[:n], from.String())
		if resp != nil {
			if _, err := conn.WriteTo(resp, from); err != nil {
				s.log.Debug("write response", "to", from, "err", err)
			}
		}
	}
}

// Close stops every Serve and closes their sockets.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

// Handle answers one datagram "cookie bencoded-dict" from peer (any string
// identifying the sender, for the retransmission cache) and returns the
// response datagram, or nil when the request is too broken to answer.
func (s *Server) Handle(ctx context.Context, msg []byte, peer string) []byte {
	sp := bytes.IndexByte(msg, ' ')
	if sp <= 0 {
		s.log.Debug("datagram without cookie", "from", peer)
		return nil
	}
	cookie := string(msg[:sp])
	key := peer + " " + cookie
	now := time.Now()
	s.mu.Lock()
	s.requests++
	if now.Sub(s.purged) > s.cfg.RetransmitWindow {
		for k, c := range s.cache {
			if now.Sub(c.at) > s.cfg.RetransmitWindow {
				delete(s.cache, k)
			}
		}
		s.purged = now
	}
	if c, ok := s.cache[key]; ok && now.Sub(c.at) <= s.cfg.RetransmitWindow {
		s.mu.Unlock()
		return c.resp
	}
	s.mu.Unlock()

	reply := s.command(ctx, msg[sp+1:])
	out, err := Encode(append([]byte(cookie), ' '), reply)
	if err != nil {
		out, _ = Encode(append([]byte(cookie), ' '), errorReply(err))
	}
	s.mu.Lock()
	if reply["result"] == "error" {
		s.errors++
	}
	s.cache[key] = cached{resp: out, at: now}
	s.mu.Unlock()
	return out
}

func errorReply(err error) map[string]any {
	return map[string]any{"result": "error", "error-reason": err.Error()}
}

// command decodes and runs one command dictionary.
func (s *Server) command(ctx context.Context, body []byte) map[string]any {
	v, err := Decode(body)
	if err != nil {
		return errorReply(err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return errorReply(fmt.Errorf("%w: command is not a dictionary", ErrBencode))
	}
	cmd := str(d, "command")
	s.log.Debug("command", "command", cmd, "call_id", str(d, "call-id"))
	var reply map[string]any
	switch cmd {
	case "ping":
		return map[string]any{"result": "pong"}
	case "offer":
		reply, err = s.offer(ctx, d)
	case "answer":
		reply, err = s.answer(ctx, d)
	case "delete":
		reply, err = s.delete(ctx, d)
	case "query":
		reply, err = s.query(ctx, d)
	case "list":
		reply = map[string]any{"result": "ok", "calls": toAny(s.cfg.Relay.Sessions())}
	default:
		err = fmt.Errorf("unrecognized command %q", cmd)
	}
	if err != nil {
		return errorReply(err)
	}
	return reply
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func (s *Server) offer(ctx context.Context, d map[string]any) (map[string]any, error) {
	fl, source, err := parseFlags(d)
	if err != nil {
		return nil, err
	}
	out, err := s.cfg.Relay.Offer(ctx, relay.OfferRequest{
		CallID: str(d, "call-id"), FromTag: str(d, "from-tag"), ToTag: str(d, "to-tag"),
		SDP: []byte(str(d, "sdp")), SourceAddr: source, Flags: fl,
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"result": "ok", "sdp": out}, nil
}

func (s *Server) answer(ctx context.Context, d map[string]any) (map[string]any, error) {
	fl, source, err := parseFlags(d)
	if err != nil {
		return nil, err
	}
	out, err := s.cfg.Relay.Answer(ctx, relay.AnswerRequest{
		CallID: str(d, "call-id"), FromTag: str(d, "from-tag"), ToTag: str(d, "to-tag"),
		SDP: []byte(str(d, "sdp")), SourceAddr: source, Flags: fl,
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"result": "ok", "sdp": out}, nil
}

func (s *Server) delete(ctx context.Context, d map[string]any) (map[string]any, error) {
	id := str(d, "call-id")
	// The proxy may want the final counters (rtpengine returns them).
	q, qerr := s.cfg.Relay.Query(ctx, id)
	if err := s.cfg.Relay.Delete(ctx, relay.DeleteRequest{CallID: id, FromTag: str(d, "from-tag"), ToTag: str(d, "to-tag")}); err != nil {
		return nil, err
	}
	reply := map[string]any{"result": "ok"}
	if qerr == nil {
		for k, v := range queryReply(q) {
			if k != "result" {
				reply[k] = v
			}
		}
	}
	return reply, nil
}

func (s *Server) query(ctx context.Context, d map[string]any) (map[string]any, error) {
	q, err := s.cfg.Relay.Query(ctx, str(d, "call-id"))
	if err != nil {
		return nil, err
	}
	return queryReply(q), nil
}

// queryReply renders session stats in the shape of rtpengine's query
// response: totals plus per-tag media and streams.
func queryReply(q relay.SessionStats) map[string]any {
	var rtpP, rtpB, rtcpP, rtcpB, errs uint64
	tags := map[string]any{}
	for side, tag := range []string{q.FromTag, q.ToTag} {
		var medias []any
		for _, st := range q.Streams {
			l := st.Legs[side]
			rtpP += l.RTPPackets
			rtpB += l.RTPBytes
			rtcpP += l.RTCPPackets
			rtcpB += l.RTCPBytes
			errs += l.Drops.Total()
			ep := map[string]any{}
			if l.Peer.IsValid() {
				ep = endpoint(l.Peer)
			}
			medias = append(medias, map[string]any{
				"index": st.Index + 1,
				"type":  st.Media,
				"streams": []any{map[string]any{
					"local port":          int(l.Local.Port()),
					"endpoint":            ep,
					"advertised endpoint": endpoint(l.Advertised),
					"stats": map[string]any{
						"packets": l.RTPPackets, "bytes": l.RTPBytes, "errors": l.Drops.Total(),
						"lost": l.Lost, "jitter": int64(l.JitterUnits),
					},
				}},
			})
		}
		if tag != "" {
			tags[tag] = map[string]any{"tag": tag, "created": q.Created.Unix(), "medias": medias}
		}
	}
	return map[string]any{
		"result":      "ok",
		"created":     q.Created.Unix(),
		"last signal": q.LastSignal.Unix(),
		"tags":        tags,
		"totals": map[string]any{
			"RTP":  map[string]any{"packets": rtpP, "bytes": rtpB, "errors": errs},
			"RTCP": map[string]any{"packets": rtcpP, "bytes": rtcpB, "errors": uint64(0)},
		},
	}
}

func endpoint(a netip.AddrPort) map[string]any {
	fam := "IPv4"
	if a.Addr().Is6() {
		fam = "IPv6"
	}
	return map[string]any{"family": fam, "address": a.Addr().String(), "port": int(a.Port())}
}

// Stats are the server's counters.
type Stats struct {
	Requests, Errors uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Requests: s.requests, Errors: s.errors}
}
