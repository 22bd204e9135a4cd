package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// kamailioCfg routes every request to the UAS and lets the rtpengine module
// (pointed at our relayd) rewrite INVITE offers, 200 OK answers and delete
// the session on BYE: the usual Kamailio media-anchoring setup.
const kamailioCfg = `#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
listen=udp:127.0.0.1:%[1]d
mpath="%[4]s"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:%[2]s")
request_route {
	if (is_method("INVITE") && has_body("application/sdp")) {
		rtpengine_offer("replace-origin replace-session-connection ICE=remove");
		record_route();
		t_on_reply("MEDIA");
	}
	if (is_method("BYE|CANCEL")) {
		rtpengine_delete();
	}
	$du = "sip:127.0.0.1:%[3]d";
	t_relay();
	exit;
}
onreply_route[MEDIA] {
	if (has_body("application/sdp")) {
		rtpengine_answer("replace-origin replace-session-connection ICE=remove");
	}
}
`

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestKamailioSippCall: sipp (UAC, playing G.711 RTP from a pcap) calls
// sipp (UAS, echoing RTP) through Kamailio, whose rtpengine module drives our
// relayd over the ng protocol. The media must flow through the relay both
// ways.
func TestKamailioSippCall(t *testing.T) {
	kam, err := exec.LookPath("kamailio")
	if err != nil {
		t.Skip("kamailio not installed (Debian package kamailio); skipping the ng interoperability test")
	}
	sipp, err := exec.LookPath("sipp")
	if err != nil {
		t.Skip("sipp not installed (Debian package sip-tester); skipping the ng interoperability test")
	}
	const pcapDir = "/usr/share/sip-tester"
	if _, err := os.Stat(filepath.Join(pcapDir, "g711a.pcap")); err != nil {
		t.Skip("sip-tester's pcap files are missing")
	}
	if os.Geteuid() != 0 {
		// sipp plays pcap files through a raw socket.
		t.Skip("sipp's pcap playback needs root (raw sockets)")
	}
	modDir := ""
	for _, d := range []string{"/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules"} {
		if _, err := os.Stat(filepath.Join(d, "rtpengine.so")); err == nil {
			modDir = d
		}
	}
	if modDir == "" {
		t.Skip("kamailio's rtpengine module not found")
	}

	r, ngAddr := startRelayd(t, 23200, 23399)
	dir := t.TempDir()
	kamPort, uasPort, uacPort := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	uasMedia, uacMedia := 23400, 23410
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, kamailioCfg, kamPort, ngAddr.String(), uasPort, modDir), 0o644); err != nil {
		t.Fatal(err)
	}
	// sipp's uac_pcap scenario plays "pcap/g711a.pcap" relative to its
	// working directory.
	if err := os.Symlink(pcapDir, filepath.Join(dir, "pcap")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var kamOut bytes.Buffer
	kcmd := exec.Command(kam, "-f", cfgPath, "-DD", "-E", "-m", "64", "-M", "8", "-P", filepath.Join(dir, "kamailio.pid"), "-Y", dir, "-w", dir)
	kcmd.Stdout, kcmd.Stderr = &kamOut, &kamOut
	if err := kcmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		kcmd.Process.Signal(syscall.SIGTERM)
		kcmd.Wait()
		if t.Failed() {
			t.Logf("kamailio output:\n%s", kamOut.String())
		}
	}()
	waitUDP(t, kamPort)

	var uasOut, uacOut bytes.Buffer
	uas := exec.CommandContext(ctx, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", fmt.Sprint(uasPort),
		"-mi", "127.0.0.1", "-mp", fmt.Sprint(uasMedia), "-rtp_echo", "-m", "1", "-nostdin", "-timeout", "45s")
	uas.Dir, uas.Stdout, uas.Stderr = dir, &uasOut, &uasOut
	if err := uas.Start(); err != nil {
		t.Fatal(err)
	}
	defer uas.Wait()
	time.Sleep(300 * time.Millisecond) // let the UAS bind before the INVITE

	uac := exec.CommandContext(ctx, sipp, "-sn", "uac_pcap", fmt.Sprintf("127.0.0.1:%d", kamPort), "-s", "echo",
		"-i", "127.0.0.1", "-p", fmt.Sprint(uacPort), "-mi", "127.0.0.1", "-mp", fmt.Sprint(uacMedia),
		"-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error")
	uac.Dir, uac.Stdout, uac.Stderr = dir, &uacOut, &uacOut
	if err := uac.Run(); err != nil {
		t.Fatalf("sipp UAC failed: %v\n%s\nUAS:\n%s", err, tail(uacOut.Bytes()), tail(uasOut.Bytes()))
	}

	st := r.Stats()
	t.Logf("relay after the call: %+v", st)
	// The UAC plays about 250 packets; the UAS echoes what reaches it, and
	// its leg latches only if the UAC's media arrived through the relay.
	if st.RTPPackets < 300 || st.Forwarded != st.RTPPackets || st.Drops.Total() != 0 {
		t.Errorf("media did not flow through the relay: %+v", st)
	}
	if st.Latches != 2 {
		t.Errorf("latches = %d, want 2: both parties' media must pass the relay", st.Latches)
	}
	// sipp's UAS answers PCMU to the UAC's PCMA offer; the relay converts
	// instead of passing audio the other side cannot decode.
	if st.Transcoded == 0 {
		t.Errorf("no transcoding between the UAC's PCMA and the UAS's PCMU")
	}
	if st.Sessions != 0 || st.PortPairsInUse != 0 {
		t.Errorf("BYE did not delete the session: %+v", st)
	}
}

func waitUDP(t *testing.T, port int) {
	t.Helper()
	// Kamailio answers OPTIONS-less probes with nothing; wait until its port
	// is bound instead.
	for range 100 {
		c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return // bound by kamailio
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("kamailio did not bind its port")
}

func tail(b []byte) []byte {
	if len(b) > 3000 {
		return b[len(b)-3000:]
	}
	return b
}
