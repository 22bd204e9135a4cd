package stun_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/talkpad/talkpad/stun"
)

// TestNATNamespaces classifies real Linux NATs. It builds three network
// namespaces of its own,
//
//	client 10.99.1.2 ── 10.99.1.1 nat (nftables) 203.0.113.254 ── 203.0.113.1, .2 server
//
// runs our server in "server" with RFC 5780 on its two addresses, and our
// classifier in "client", behind each NAT flavour. No address outside these
// namespaces is used. It needs root, ip (iproute2) and nft (nftables).
func TestNATNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages iproute2, nftables): %v", tool, err)
		}
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	cli, nat, srv := "tpc"+id, "tpn"+id, "tps"+id
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	for _, ns := range []string{cli, nat, srv} {
		sh("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh("ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh("ip", "link", "add", "lan"+id, "netns", cli, "type", "veth", "peer", "name", "lan", "netns", nat)
	sh("ip", "link", "add", "wan"+id, "netns", srv, "type", "veth", "peer", "name", "wan", "netns", nat)
	sh("ip", "-n", cli, "addr", "add", "10.99.1.2/24", "dev", "lan"+id)
	sh("ip", "-n", cli, "link", "set", "lan"+id, "up")
	sh("ip", "-n", cli, "route", "add", "default", "via", "10.99.1.1")
	sh("ip", "-n", nat, "addr", "add", "10.99.1.1/24", "dev", "lan")
	sh("ip", "-n", nat, "addr", "add", "203.0.113.254/24", "dev", "wan")
	sh("ip", "-n", nat, "link", "set", "lan", "up")
	sh("ip", "-n", nat, "link", "set", "wan", "up")
	sh("ip", "netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	sh("ip", "-n", srv, "addr", "add", "203.0.113.1/24", "dev", "wan"+id)
	sh("ip", "-n", srv, "addr", "add", "203.0.113.2/24", "dev", "wan"+id)
	sh("ip", "-n", srv, "link", "set", "wan"+id, "up")

	// The server's four sockets are opened inside its namespace and keep
	// living there after this goroutine's thread switches back.
	var socks [4]net.PacketConn
	inNetns(t, srv, func() {
		for i, a := range []string{"203.0.113.1:3478", "203.0.113.1:3479", "203.0.113.2:3478", "203.0.113.2:3479"} {
			pc, err := net.ListenPacket("udp", a)
			if err != nil {
				t.Fatal(err)
			}
			socks[i] = pc
		}
	})
	server, err := stun.New(stun.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- server.ServeQuad(t.Context(), stun.Quad{Primary: socks[0], AltPort: socks[1], AltIP: socks[2], AltBoth: socks[3]})
	}()
	t.Cleanup(func() { server.Close(); <-done })

	classifier, _ := stun.NewClassifier(stun.ClassifierConfig{
		RTO: 50 * time.Millisecond, Rc: 3, Rm: 4, Logger: quiet,
		LocalAddr: "10.99.1.2:0",
		ListenPacket: func(ctx context.Context, network, address string) (pc net.PacketConn, err error) {
			inNetns(t, cli, func() { pc, err = net.ListenPacket(network, address) })
			return pc, err
		},
	})

	for _, tt := range []struct {
		name, rule string
		want       stun.NATType
		mapping    stun.Behavior
		relay      bool
	}{
		{"masquerade", "masquerade", stun.PortRestrictedCone, stun.EndpointIndependent, false},
		{"masquerade random,fully-random", "masquerade random,fully-random", stun.Symmetric, stun.AddressAndPortDependent, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ruleset := `flush ruleset
table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" ` + tt.rule + `
	}
}
`
			cmd := exec.Command("ip", "netns", "exec", nat, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(ruleset)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nft: %v\n%s", err, out)
			}
			res, err := classifier.Classify(t.Context(), "203.0.113.1:3478")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%v", res)
			if res.Type != tt.want || res.Mapping != tt.mapping || res.NeedsRelay() != tt.relay || res.Partial ||
				res.Public.Addr() != netip.MustParseAddr("203.0.113.254") {
				t.Errorf("got\n%v", res)
			}
			if tt.want == stun.PortRestrictedCone && res.Filtering != stun.AddressAndPortDependent {
				t.Errorf("filtering %v", res.Filtering)
			}
		})
	}
}

// inNetns runs fn on an OS thread switched into the named network
// namespace, then switches the thread back. Sockets fn opens stay in the
// namespace.
func inNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime then discards it
			// when the goroutine ends, instead of reusing a thread in
			// the wrong namespace.
			t.Errorf("setns back: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}
