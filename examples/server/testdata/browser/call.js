// The page side of a browser-to-browser call: JsSIP registers with the
// server over WebSocket (?ws=&user=&password=&domain=), answers any call
// it gets, and places one when the driver calls window.sipCall(target).
// window.sipState reports what happens for the driver to wait on;
// window.sipMedia() reads the peer connection's state and RTP counters.
//
// Only loopback candidates are offered (?loopback=1): the two pages share
// one machine, and the test keeps its media on 127.0.0.1 as far as it can
// (a page still gathers its other host addresses, and a check from one of
// them to the peer's 127.0.0.1 can win as a peer-reflexive candidate).
import JsSIP from 'jssip';

const q = new URLSearchParams(location.search);
if (q.get('debug')) {
	JsSIP.debug.enable('JsSIP:*');
}
// sdp holds the offer and answer as sent and received, by
// "local offer", "remote answer" and so on.
const state = { status: 'starting', log: [], cause: '', session: '', originator: '', contact: '', sdp: {} };
window.sipState = state;

function report(status, detail) {
	state.log.push(detail ? `${status}: ${detail}` : status);
	document.getElementById('status').textContent = status;
	const li = document.createElement('li');
	li.textContent = state.log[state.log.length - 1];
	document.getElementById('log').append(li);
}

// loopbackOnly drops every ICE candidate line that is not on 127.0.0.1.
function loopbackOnly(sdp) {
	return sdp
		.split('\r\n')
		.filter((l) => !l.startsWith('a=candidate:') || l.split(' ')[4] === '127.0.0.1')
		.join('\r\n');
}

const options = {
	mediaConstraints: { audio: true, video: false },
	pcConfig: { iceServers: [] },
};

let session = null;

function track(s) {
	session = s;
	state.session = 'new';
	s.on('sdp', (e) => {
		if (e.originator === 'local' && q.get('loopback')) {
			e.sdp = loopbackOnly(e.sdp);
		}
		state.sdp[`${e.originator} ${e.type}`] = e.sdp;
		report(`sdp ${e.originator} ${e.type}`);
	});
	s.on('progress', () => report('progress'));
	s.on('accepted', () => report('accepted'));
	s.on('confirmed', () => {
		state.session = 'confirmed';
		report('confirmed');
	});
	s.on('ended', (e) => {
		state.session = 'ended';
		state.cause = e.cause;
		state.originator = e.originator;
		report('ended', `${e.originator} ${e.cause}`);
	});
	s.on('failed', (e) => {
		state.session = 'failed';
		state.cause = e.cause;
		state.originator = e.originator;
		report('failed', `${e.originator} ${e.cause}`);
	});
}

const ua = new JsSIP.UA({
	sockets: [new JsSIP.WebSocketInterface(q.get('ws'))],
	uri: `sip:${q.get('user')}@${q.get('domain')}`,
	password: q.get('password'),
	register: true,
	register_expires: 300,
	connection_recovery_min_interval: 2,
	connection_recovery_max_interval: 30,
	user_agent: 'talkpad browser call test (JsSIP)',
});
ua.on('connected', () => report('connected'));
ua.on('disconnected', () => report('disconnected'));
ua.on('registered', (e) => {
	state.status = 'registered';
	state.contact = e.response.getHeader('Contact');
	report('registered', state.contact);
});
ua.on('registrationFailed', (e) => {
	state.status = 'registrationFailed';
	state.cause = e.cause;
	report('registrationFailed', e.cause);
});
ua.on('newRTCSession', (e) => {
	report('newRTCSession', `${e.originator} ${e.request.getHeader('From')}`);
	if (e.originator === 'remote') {
		state.from = e.request.getHeader('From');
		track(e.session);
		e.session.answer(options);
	}
});
ua.start();

window.sipCall = (target) => {
	track(ua.call(target, options));
};

window.sipHangup = () => session.terminate();

// sipMedia returns the peer connection's states, the selected candidate
// pair ("local remote", each address:port/type; Chromium hides the address
// of a peer-reflexive remote candidate) and the audio RTP counters.
window.sipMedia = async () => {
	const pc = session && session.connection;
	if (!pc) {
		return null;
	}
	const m = {
		connectionState: pc.connectionState,
		iceConnectionState: pc.iceConnectionState,
		packetsReceived: 0,
		packetsSent: 0,
		pair: '',
	};
	const stats = await pc.getStats();
	const byID = new Map();
	stats.forEach((r) => byID.set(r.id, r));
	stats.forEach((r) => {
		if (r.type === 'inbound-rtp' && r.kind === 'audio') {
			m.packetsReceived += r.packetsReceived || 0;
		}
		if (r.type === 'outbound-rtp' && r.kind === 'audio') {
			m.packetsSent += r.packetsSent || 0;
		}
		if (r.type === 'transport' && r.selectedCandidatePairId) {
			const p = byID.get(r.selectedCandidatePairId);
			const l = p && byID.get(p.localCandidateId);
			const rc = p && byID.get(p.remoteCandidateId);
			if (l && rc) {
				m.pair = `${l.address}:${l.port}/${l.candidateType} ${rc.address}:${rc.port}/${rc.candidateType}`;
			}
		}
	});
	return m;
};
