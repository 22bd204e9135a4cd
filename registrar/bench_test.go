package registrar

import (
	"context"
	"fmt"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/talkpad/talkpad/store"
)

// BenchmarkRegister measures one full registration as a client makes it:
// a REGISTER answered with a challenge, then the authenticated REGISTER
// answered with 200 OK. Message parsing is excluded (sipgo does it before
// the handler runs); building the Authorization header on the client side
// is excluded too.
func BenchmarkRegister(b *testing.B) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b, nil, nil)
			const users = 1000
			// Pre-build the requests: for each user, a first REGISTER and
			// the answer to its challenge.
			type pair struct{ first, auth *sip.Request }
			for i := range users {
				name := fmt.Sprintf("user%04d", i)
				e.creds.CreateCredential(context.Background(), store.NewCredential(name, testRealm, "secret-"+name))
			}
			gen := 0
			mk := func(i int) pair {
				u := newUA(fmt.Sprintf("user%04d", i))
				gen++
				u.callID = fmt.Sprintf("bench-%d", gen)
				u.src = fmt.Sprintf("203.0.113.%d:%d", i%250+1, 10000+i)
				u.alg = alg
				contact := []string{fmt.Sprintf("<sip:%s@10.1.%d.%d:5060>", u.user, i/250, i%250)}
				first := u.build(b, contact)
				u.learn(b, e.reg.Handle(first, testLocal))
				ch := *u.chal
				u.chal = nil
				first = u.build(b, contact)
				cred, _ := digest.Digest(&ch, digest.Options{Method: "REGISTER", URI: "sip:" + testRealm, Username: u.user, Password: u.pass, Count: 1})
				auth := u.build(b, contact)
				auth.AppendHeader(sip.NewHeader("Authorization", cred.String()))
				return pair{first, auth}
			}
			pairs := make([]pair, users)
			for i := range pairs {
				pairs[i] = mk(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == users {
					b.StopTimer()
					for j := range pairs {
						pairs[j] = mk(j)
					}
					i = 0
					b.StartTimer()
				}
				p := pairs[i]
				if res := e.reg.Handle(p.first, testLocal); res.StatusCode != 401 {
					b.Fatalf("first REGISTER: %d", res.StatusCode)
				}
				if res := e.reg.Handle(p.auth, testLocal); res.StatusCode != 200 {
					b.Fatalf("authenticated REGISTER: %d %s", res.StatusCode, res.Reason)
				}
				i++
			}
		})
	}
}
