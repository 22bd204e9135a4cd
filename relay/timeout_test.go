package relay_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/relay"
)

func lastEvent(e *env, typ relay.EventType) (relay.Event, bool) {
	for _, ev := range e.takeEvents() {
		if ev.Type == typ {
			return ev, true
		}
	}
	return relay.Event{}, false
}

func TestMediaTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{Timeout: 30 * time.Second})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		start := time.Now()
		// Media for 100 s keeps the session alive.
		for time.Since(start) < 100*time.Second {
			alice.send()
			bob.send()
			time.Sleep(20 * time.Millisecond)
		}
		bob.recv()
		alice.recv()
		if _, ok := lastEvent(e, relay.EventMediaTimeout); ok {
			t.Fatal("timeout while media flowed")
		}
		stopped := time.Now()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if _, ok := lastEvent(e, relay.EventMediaTimeout); ok {
			t.Fatal("timeout before 30 s of silence")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		ev, ok := lastEvent(e, relay.EventMediaTimeout)
		if !ok {
			t.Fatal("no timeout after 31 s of silence")
		}
		if ev.CallID != "c1" || ev.FromTag != "a" || ev.ToTag != "b" {
			t.Errorf("event = %+v", ev)
		}
		if d := ev.Time.Sub(stopped); d < 30*time.Second || d > 31*time.Second {
			t.Errorf("timeout after %v of silence", d)
		}
		if _, err := e.r.Query(context.Background(), "c1"); !errors.Is(err, relay.ErrNotFound) {
			t.Errorf("session still there after timeout: %v", err)
		}
		if st := e.r.Stats(); st.PortPairsInUse != 0 || st.SessionTimeouts != 1 {
			t.Errorf("after timeout: %+v", st)
		}
		if got := e.n.Bound(); got != 2 { // alice's and bob's own sockets
			t.Errorf("%d sockets bound, want 2", got)
		}
	})
}

// A session on hold survives the media timeout and ends after the hold
// timeout.
func TestHoldTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{Timeout: time.Minute, HoldTimeout: 10 * time.Minute})
		alice, _ := e.call("c1", aliceIP, bobIP, relay.Flags{})
		ctx := context.Background()
		if _, err := e.r.Offer(ctx, relay.OfferRequest{
			CallID: "c1", FromTag: "a", ToTag: "b", SDP: audioSDP(alice.conn.AddrPort(), "a=sendonly\r\n"),
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Minute)
		synctest.Wait()
		if evs := e.takeEvents(); len(evs) != 0 {
			t.Fatalf("events during hold: %+v", evs)
		}
		q, err := e.r.Query(ctx, "c1")
		if err != nil || !q.Streams[0].Hold {
			t.Fatalf("query: %v %+v", err, q)
		}
		time.Sleep(61 * time.Second)
		synctest.Wait()
		if _, ok := lastEvent(e, relay.EventHoldTimeout); !ok {
			t.Fatal("no hold timeout after 10 min")
		}
	})
}

func TestMaxLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{MaxLifetime: 2 * time.Hour})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		start := time.Now()
		for time.Since(start) < 3*time.Hour {
			alice.send()
			bob.send()
			alice.recv()
			bob.recv()
			if _, ok := lastEvent(e, relay.EventLifetime); ok {
				if d := time.Since(start); d < 2*time.Hour || d > 2*time.Hour+2*time.Second {
					t.Errorf("lifetime ended the session after %v", d)
				}
				return
			}
			time.Sleep(10 * time.Second)
		}
		t.Fatal("session outlived MaxLifetime")
	})
}

func TestServeCloseFreesEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		e.call("c1", aliceIP, bobIP, relay.Flags{})
		e.call("c2", aliceIP, bobIP, relay.Flags{})
		if st := e.r.Stats(); st.Sessions != 2 || st.PortPairsInUse != 4 {
			t.Fatalf("stats = %+v", st)
		}
		e.cancel()
		if err := <-e.done; !errors.Is(err, relay.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		e.done <- nil
		if _, err := e.r.Offer(context.Background(), relay.OfferRequest{CallID: "x", FromTag: "a", SDP: audioSDP(alice4000, "")}); !errors.Is(err, relay.ErrServerClosed) {
			t.Errorf("Offer after close: %v", err)
		}
		if st := e.r.Stats(); st.PortPairsInUse != 0 || st.Sessions != 0 {
			t.Errorf("after close: %+v", st)
		}
		e.r.Close() // idempotent
	})
}

// An offer that is never answered is not ended by the media timeout (the
// phone may ring for minutes) but by the hold timeout.
func TestUnansweredSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{Timeout: time.Minute, HoldTimeout: 5 * time.Minute})
		if _, err := e.r.Offer(context.Background(), relay.OfferRequest{CallID: "ring", FromTag: "a", SDP: audioSDP(alice4000, "")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Minute)
		synctest.Wait()
		if evs := e.takeEvents(); len(evs) != 0 {
			t.Fatalf("events while ringing: %+v", evs)
		}
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if _, ok := lastEvent(e, relay.EventHoldTimeout); !ok {
			t.Fatal("unanswered session never ended")
		}
	})
}
