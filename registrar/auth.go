package registrar

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/talkpad/talkpad/store"
)

// CredentialGetter is what the authenticator needs of a credential store.
// store.Credentials satisfies it.
type CredentialGetter interface {
	GetCredential(ctx context.Context, realm, username string) (store.Credential, error)
}

// AuthConfig configures an Authenticator.
type AuthConfig struct {
	// Realm is the digest realm offered in challenges and looked up in the
	// credential store. Required.
	Realm string
	// Credentials looks up users' HA1 values. Required.
	Credentials CredentialGetter
	// Secret keys the nonce HMAC. Nodes that share a secret accept each
	// other's nonces. Defaults to 32 random bytes per process, so nonces
	// do not survive a restart (clients simply get a new challenge).
	Secret []byte
	// NonceLifetime is how long a nonce is accepted; after it, a correct
	// response gets a new challenge with stale=true. Defaults to 5 minutes.
	NonceLifetime time.Duration
	// Algorithms are offered in this order, one challenge header each,
	// all with one nonce, subject to ChallengeAlgorithms. Defaults to MD5
	// then SHA-256. Supported: "MD5", "SHA-256", "SHA-512-256".
	//
	// The order matters because clients read the headers differently:
	// RFC 8760 clients pick the strongest they support; sipp, sipsak and
	// many phones take the first one and fail unless it is MD5; JsSIP and
	// SIP.js keep only the last one and fail unless it is MD5; baresip 1.x
	// (libre 1.x) gives up if any of them is not MD5.
	Algorithms []string
	// ChallengeAlgorithms picks the algorithms to offer the sender of req,
	// in header order, from the configured ones. Nil means
	// DefaultChallengeAlgorithms, which adapts the order to the client
	// kinds above.
	ChallengeAlgorithms func(req *sip.Request, configured []string) []string
	// AllowNoQOP accepts RFC 2069 responses without qop, which carry no
	// nonce-count and so cannot be protected against replay within the
	// nonce lifetime. Defaults to false.
	AllowNoQOP bool
	// FailureLimit is how many failed authentications may come within
	// FailureWindow from one source address (an IPv6 /64) for one user name
	// (wrong passwords, replays), or from one source for unknown users and
	// malformed headers, before such requests are refused unread with 403
	// until the window ends. Defaults to 10; negative disables the
	// throttle.
	FailureLimit int
	// FailureWindow defaults to one minute.
	FailureWindow time.Duration
	// Logger defaults to slog.Default() with component=registrar/auth.
	Logger *slog.Logger
}

// Authenticator verifies SIP digest authentication (RFC 3261 §22, RFC 7616,
// RFC 8760) against stored HA1 values: stateless nonces with expiry and
// stale=true, nonce-count replay protection, constant-time comparison and a
// per-source failure throttle. It is safe for concurrent use and is shared
// by the registrar and by anything else that challenges requests (an
// INVITE's 407, for example).
type Authenticator struct {
	cfg    AuthConfig
	nonces nonceMaker
	nc     ncTracker
	thr    *throttle
	log    *slog.Logger

	stats authStats
}

type authStats struct {
	challenges, ok, stale, wrong, unknownUser, replay, malformed, throttled, disabled, storeErr atomic.Uint64
}

// AuthStats counts authentication outcomes.
type AuthStats struct {
	Challenges  uint64 // challenges sent (requests without usable credentials)
	OK          uint64 // successful authentications
	Stale       uint64 // correct responses with an expired nonce
	Wrong       uint64 // wrong responses (bad password)
	UnknownUser uint64 // users not in the store (answered like Wrong)
	Replay      uint64 // reused nonce-counts
	Malformed   uint64 // unparsable Authorization headers (400)
	Throttled   uint64 // requests refused by the failure throttle
	Disabled    uint64 // correct responses for disabled credentials
	StoreErrors uint64 // credential lookups that failed
}

// ErrAuthConfig reports an unusable AuthConfig.
var ErrAuthConfig = errors.New("registrar: invalid auth config")

// NewAuthenticator returns an Authenticator for cfg.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if cfg.Realm == "" || strings.ContainsAny(cfg.Realm, "\"\\\r\n") {
		return nil, fmt.Errorf("%w: Realm is required and must not contain quotes or line breaks", ErrAuthConfig)
	}
	if cfg.Credentials == nil {
		return nil, fmt.Errorf("%w: Credentials is required", ErrAuthConfig)
	}
	if len(cfg.Secret) == 0 {
		cfg.Secret = make([]byte, 32)
		rand.Read(cfg.Secret)
	}
	if cfg.NonceLifetime <= 0 {
		cfg.NonceLifetime = 5 * time.Minute
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"MD5", "SHA-256"}
	}
	for i, a := range cfg.Algorithms {
		a = strings.ToUpper(a)
		if a != "MD5" && a != "SHA-256" && a != "SHA-512-256" {
			return nil, fmt.Errorf("%w: unsupported algorithm %q", ErrAuthConfig, a)
		}
		cfg.Algorithms[i] = a
	}
	if cfg.FailureLimit == 0 {
		cfg.FailureLimit = 10
	}
	if cfg.FailureWindow <= 0 {
		cfg.FailureWindow = time.Minute
	}
	if cfg.ChallengeAlgorithms == nil {
		cfg.ChallengeAlgorithms = DefaultChallengeAlgorithms
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default().With("component", "registrar/auth")
	}
	a := &Authenticator{
		cfg:    cfg,
		nonces: nonceMaker{secret: cfg.Secret, realm: cfg.Realm},
		log:    cfg.Logger,
	}
	if cfg.FailureLimit > 0 {
		a.thr = newThrottle(cfg.FailureLimit, cfg.FailureWindow, 100_000)
	}
	return a, nil
}

// Realm returns the realm the authenticator challenges for.
func (a *Authenticator) Realm() string { return a.cfg.Realm }

// Stats returns a snapshot of the counters.
func (a *Authenticator) Stats() AuthStats {
	s := &a.stats
	return AuthStats{
		Challenges: s.challenges.Load(), OK: s.ok.Load(), Stale: s.stale.Load(), Wrong: s.wrong.Load(),
		UnknownUser: s.unknownUser.Load(), Replay: s.replay.Load(), Malformed: s.malformed.Load(),
		Throttled: s.throttled.Load(), Disabled: s.disabled.Load(), StoreErrors: s.storeErr.Load(),
	}
}

// Authenticate checks the credentials of req: the Authorization header, or
// Proxy-Authorization when proxy is true (an INVITE challenged with 407).
//
// On success it returns the credential and a nil response. Otherwise it
// returns the response to send: 401/407 with fresh challenges (no or wrong
// credentials, an unknown user, a replay, stale=true for an expired nonce),
// 400 for a malformed header, 403 for a disabled account or a source that
// failed too often, 500 when the credential store fails.
func (a *Authenticator) Authenticate(ctx context.Context, req *sip.Request, proxy bool) (store.Credential, *sip.Response) {
	now := time.Now()
	src := sourceAddr(req)
	throttled := func() (store.Credential, *sip.Response) {
		a.stats.throttled.Add(1)
		res := sip.NewResponseFromRequest(req, sip.StatusForbidden, "Too Many Failed Authentications", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(int(a.cfg.FailureWindow/time.Second))))
		return store.Credential{}, res
	}
	if a.thr.blocked(src.Addr(), "", now) {
		return throttled()
	}
	hdrName := "Authorization"
	if proxy {
		hdrName = "Proxy-Authorization"
	}
	creds, found, err := a.findCredentials(req, hdrName)
	if err != nil {
		a.stats.malformed.Add(1)
		a.thr.fail(src.Addr(), "", now)
		a.log.Debug("malformed authorization", "source", src, "error", err)
		return store.Credential{}, sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Malformed "+hdrName, nil)
	}
	if !found {
		a.stats.challenges.Add(1)
		return store.Credential{}, a.challenge(req, proxy, false, now)
	}
	if a.thr.blocked(src.Addr(), creds.Username, now) {
		return throttled()
	}
	issued, nonceOK := a.nonces.check(creds.Nonce)
	if !nonceOK {
		// Not ours (another realm's secret, a forged or truncated
		// nonce): challenge, without counting it as a password failure.
		a.stats.challenges.Add(1)
		return store.Credential{}, a.challenge(req, proxy, false, now)
	}
	c, err := a.cfg.Credentials.GetCredential(ctx, a.cfg.Realm, creds.Username)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Same answer as a wrong password: no user enumeration.
		a.stats.unknownUser.Add(1)
		a.thr.fail(src.Addr(), "", now)
		return store.Credential{}, a.challenge(req, proxy, false, now)
	case err != nil:
		a.stats.storeErr.Add(1)
		a.log.Warn("credential lookup failed", "user", creds.Username, "error", err)
		res := sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Credential Store Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		return store.Credential{}, res
	}
	if !a.responseOK(creds, c, string(req.Method)) {
		a.stats.wrong.Add(1)
		a.thr.fail(src.Addr(), creds.Username, now)
		a.log.Debug("wrong digest response", "user", creds.Username, "source", src)
		return store.Credential{}, a.challenge(req, proxy, false, now)
	}
	// The response proves knowledge of the password; only now do the
	// nonce's age and count matter.
	expires := issued.Add(a.cfg.NonceLifetime)
	if !now.Before(expires) || issued.After(now.Add(time.Minute)) {
		a.stats.stale.Add(1)
		return store.Credential{}, a.challenge(req, proxy, true, now)
	}
	if creds.QOP != "" && !a.nc.use(creds.Nonce, uint32(creds.Nc), now, expires) {
		a.stats.replay.Add(1)
		a.thr.fail(src.Addr(), creds.Username, now)
		a.log.Debug("replayed nonce-count", "user", creds.Username, "source", src, "nc", creds.Nc)
		return store.Credential{}, a.challenge(req, proxy, false, now)
	}
	if c.Disabled {
		a.stats.disabled.Add(1)
		return store.Credential{}, sip.NewResponseFromRequest(req, sip.StatusForbidden, "Account Disabled", nil)
	}
	a.stats.ok.Add(1)
	return c, nil
}

// findCredentials returns the first digest credentials of hdrName for this
// realm. found is false when there are none (a first request).
func (a *Authenticator) findCredentials(req *sip.Request, hdrName string) (*digest.Credentials, bool, error) {
	for _, h := range req.GetHeaders(hdrName) {
		v := h.Value()
		if !digest.IsDigest(v) {
			continue // another scheme; RFC 3261 allows several
		}
		creds, err := ParseAuthorization(v)
		if err != nil {
			return nil, false, err
		}
		if creds.Realm != a.cfg.Realm {
			continue // for another hop's realm
		}
		if creds.QOP == "" && !a.cfg.AllowNoQOP {
			return nil, false, nil // re-challenge: we require qop
		}
		return creds, true, nil
	}
	return nil, false, nil
}

// ParseAuthorization parses a Digest Authorization or Proxy-Authorization
// header value and checks that the fields a response needs are present and
// sane. It never panics on any input.
func ParseAuthorization(v string) (*digest.Credentials, error) {
	if len(v) > 4096 {
		return nil, errors.New("authorization header too long")
	}
	creds, err := digest.ParseCredentials(v)
	if err != nil {
		return nil, err
	}
	switch {
	case creds.Username == "":
		return nil, errors.New("authorization without username")
	case creds.Nonce == "":
		return nil, errors.New("authorization without nonce")
	case creds.URI == "":
		return nil, errors.New("authorization without uri")
	case creds.Response == "":
		return nil, errors.New("authorization without response")
	case creds.QOP != "" && creds.QOP != "auth" && creds.QOP != "auth-int":
		return nil, fmt.Errorf("unknown qop %q", creds.QOP)
	case creds.QOP != "" && (creds.Cnonce == "" || creds.Nc <= 0):
		return nil, errors.New("qop without cnonce or nc")
	}
	switch strings.ToUpper(creds.Algorithm) {
	case "", "MD5", "MD5-SESS", "SHA-256", "SHA-256-SESS", "SHA-512-256", "SHA-512-256-SESS":
	default:
		return nil, fmt.Errorf("unknown algorithm %q", creds.Algorithm)
	}
	return creds, nil
}

// responseOK recomputes the digest response from the stored HA1 and
// compares it with the client's in constant time.
func (a *Authenticator) responseOK(creds *digest.Credentials, c store.Credential, method string) bool {
	if creds.Userhash || creds.QOP == "auth-int" {
		// We offer neither; a client using them is not answering us.
		return false
	}
	alg := strings.ToUpper(creds.Algorithm)
	base := strings.TrimSuffix(alg, "-SESS")
	ha1 := c.HA1For(base)
	if ha1 == "" {
		return false
	}
	var h hash.Hash
	switch base {
	case "", "MD5":
		h = md5.New()
	case "SHA-256":
		h = sha256.New()
	case "SHA-512-256":
		h = sha512.New512_256()
	default:
		return false
	}
	if strings.HasSuffix(alg, "-SESS") {
		ha1 = hashHex(h, ha1, ":", creds.Nonce, ":", creds.Cnonce)
	}
	ha2 := hashHex(h, method, ":", creds.URI)
	var want string
	if creds.QOP == "" {
		want = hashHex(h, ha1, ":", creds.Nonce, ":", ha2)
	} else {
		nc := fmt.Sprintf("%08x", creds.Nc)
		want = hashHex(h, ha1, ":", creds.Nonce, ":", nc, ":", creds.Cnonce, ":", creds.QOP, ":", ha2)
	}
	got := strings.ToLower(creds.Response)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func hashHex(h hash.Hash, parts ...string) string {
	h.Reset()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	var sum [64]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// challenge builds a 401 (or 407) with one challenge per configured
// algorithm, all with the same fresh nonce.
func (a *Authenticator) challenge(req *sip.Request, proxy, stale bool, now time.Time) *sip.Response {
	code, reason, hdr := sip.StatusUnauthorized, "Unauthorized", "WWW-Authenticate"
	if proxy {
		code, reason, hdr = sip.StatusProxyAuthRequired, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	nonce := a.nonces.make(now)
	for _, alg := range a.cfg.ChallengeAlgorithms(req, a.cfg.Algorithms) {
		// The same text digest.Challenge.String writes, built directly:
		// this runs for every first REGISTER. The realm was checked for
		// quotes and line breaks in NewAuthenticator; the nonce is
		// base64url.
		var b strings.Builder
		b.Grow(len(a.cfg.Realm) + len(nonce) + 80)
		b.WriteString(`Digest realm="`)
		b.WriteString(a.cfg.Realm)
		b.WriteString(`", nonce="`)
		b.WriteString(nonce)
		b.WriteString(`"`)
		if stale {
			b.WriteString(", stale=true")
		}
		b.WriteString(", algorithm=")
		b.WriteString(alg)
		b.WriteString(`, qop="auth"`)
		res.AppendHeader(sip.NewHeader(hdr, b.String()))
	}
	return res
}

// md5OnlyAgents are User-Agent prefixes of clients that abandon
// authentication when any challenge names an algorithm other than MD5.
var md5OnlyAgents = []string{
	"baresip v0.", "baresip v1.", // libre before 2.x: ENOSYS on SHA-256
}

// DefaultChallengeAlgorithms is the default AuthConfig.ChallengeAlgorithms.
// It offers the configured algorithms in their order, except:
//
//   - to clients known to give up on any non-MD5 challenge (baresip 1.x,
//     by User-Agent), MD5 alone;
//   - over WebSocket, whose clients are browser stacks (JsSIP, SIP.js)
//     that keep only the last challenge header, with MD5 moved last.
//
// Clients that choose among challenges as RFC 8760 asks are unaffected.
func DefaultChallengeAlgorithms(req *sip.Request, configured []string) []string {
	hasMD5 := slices.Contains(configured, "MD5")
	if !hasMD5 || len(configured) == 1 {
		return configured
	}
	if h := req.GetHeader("User-Agent"); h != nil {
		ua := h.Value()
		for _, p := range md5OnlyAgents {
			if strings.HasPrefix(ua, p) {
				return []string{"MD5"}
			}
		}
	}
	switch strings.ToUpper(req.Transport()) {
	case "WS", "WSS":
		if configured[len(configured)-1] == "MD5" {
			return configured
		}
		out := make([]string, 0, len(configured))
		for _, a := range configured {
			if a != "MD5" {
				out = append(out, a)
			}
		}
		return append(out, "MD5")
	}
	return configured
}

// sourceAddr is where req came from: the packet source or connection peer
// that sipgo recorded, else Via's sent-by with received/rport.
func sourceAddr(req *sip.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
