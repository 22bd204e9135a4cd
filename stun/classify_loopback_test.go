package stun_test

import (
	"context"
	"testing"
	"time"

	"github.com/talkpad/talkpad/stun"
)

// TestClassifyLoopback classifies the path to an in-process RFC 5780
// server on loopback: no NAT, no filter.
func TestClassifyLoopback(t *testing.T) {
	qs := startQuad(t, stun.Config{})
	c, err := stun.NewClassifier(stun.ClassifierConfig{RTO: 50 * time.Millisecond, LocalAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Classify(context.Background(), qs.addrs[0].String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%v", res)
	if res.Type != stun.OpenInternet || res.Mapping != stun.EndpointIndependent ||
		res.Filtering != stun.EndpointIndependent || res.Partial || res.BehindNAT || res.NeedsRelay() {
		t.Errorf("got %+v", res)
	}
	if res.Other != qs.addrs[3] || res.Public != res.Local {
		t.Errorf("other %v public %v local %v", res.Other, res.Public, res.Local)
	}
}
