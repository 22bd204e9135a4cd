package registrar

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/talkpad/talkpad/store"
)

func TestDestination(t *testing.T) {
	for _, tc := range []struct {
		b         store.Binding
		want      string
		transport string
		err       bool
	}{
		{store.Binding{Contact: "sip:a@10.0.0.2", Received: netip.MustParseAddrPort("203.0.113.1:4000"), Transport: "udp"}, "203.0.113.1:4000", "udp", false},
		{store.Binding{Contact: "sip:a@x.invalid;transport=ws", Received: netip.MustParseAddrPort("203.0.113.1:50000"), Transport: "ws"}, "203.0.113.1:50000", "ws", false},
		{store.Binding{Contact: "sip:a@df7jal23ls0d.invalid;transport=ws"}, "", "", true},
		{store.Binding{Contact: "sip:a@192.0.2.4:5070;transport=tcp"}, "192.0.2.4:5070", "tcp", false},
		{store.Binding{Contact: "sips:a@192.0.2.4"}, "192.0.2.4:5061", "udp", false},
		{store.Binding{Contact: "sip:a@phone.example.com"}, "", "", true},
	} {
		got, tr, err := Destination(tc.b)
		if tc.err {
			if !errors.Is(err, ErrUnreachable) {
				t.Errorf("Destination(%s) = %v, %v; want ErrUnreachable", tc.b.Contact, got, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want || tr != tc.transport {
			t.Errorf("Destination(%s) = %v %s %v; want %s %s", tc.b.Contact, got, tr, err, tc.want, tc.transport)
		}
	}
}
