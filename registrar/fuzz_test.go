package registrar

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="example.com", nonce="abc", uri="sip:example.com", response="0123456789abcdef0123456789abcdef", algorithm=MD5, qop=auth, nc=00000001, cnonce="xyz"`,
		`Digest username="a\"b", realm="r", nonce="n", uri="u", response="r"`,
		`Digest username=alice,realm=example.com`,
		`Digest `,
		`Basic YWxhZGRpbjpvcGVuc2VzYW1l`,
		`Digest username="alice", nc=ffffffffff`,
		`Digest ,,,=,"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseAuthorization(s)
		if err == nil && (c.Username == "" || c.Nonce == "" || c.Response == "" || c.URI == "") {
			t.Fatalf("accepted credentials without mandatory fields: %+v", c)
		}
	})
}

// FuzzRegister feeds arbitrary messages through sipgo's parser into the
// registrar: whatever parses must get a response, never a panic, and must
// never leave an invalid binding behind.
func FuzzRegister(f *testing.F) {
	seeds := []string{
		"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@10.0.0.2:5060>;expires=60;q=0.5\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:bob@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c2\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n",
		"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bK1\r\nFrom: <sip:carol@example.com>;tag=1\r\nTo: <sip:carol@example.com>\r\nCall-ID: c3\r\nCSeq: 3 REGISTER\r\nContact: <sip:c@x.invalid;transport=ws>;+sip.instance=\"<urn:uuid:1>\";reg-id=1, <sip:c2@10.0.0.1>;expires=0\r\nPath: <sip:p1;lr>, <sip:p2;lr>\r\nSupported: path, outbound\r\nRequire: path\r\nX-NAT-Type: symmetric\r\nContent-Length: 0\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	e := newEnv(f, func(c *Config) {
		c.Insecure, c.Auth = true, nil
		c.Logger = slog.New(slog.DiscardHandler)
	}, nil)
	f.Fuzz(func(t *testing.T, raw string) {
		msg, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource("203.0.113.1:5060")
		res := e.reg.Handle(req, testLocal)
		if res == nil {
			t.Fatal("no response")
		}
		if to := req.To(); to != nil {
			if aor, err := aorOf(&to.Address); err == nil {
				for _, b := range lookup(t, e, aor) {
					if err := b.Validate(); err != nil || strings.ContainsAny(b.Contact, "\r\n") {
						t.Fatalf("invalid binding stored: %+v (%v)", b, err)
					}
				}
			}
		}
	})
}
