// The page side: JsSIP registers with the server over WebSocket, using the
// account given in the query string (?ws=&user=&password=&domain=), and
// reports what happens in window.sipState for the driver to wait on.
import JsSIP from 'jssip';

const q = new URLSearchParams(location.search);
if (q.get('debug')) {
	JsSIP.debug.enable('JsSIP:*');
}
const state = { status: 'starting', log: [], cause: '' };
window.sipState = state;

function report(status, detail) {
	state.status = status;
	state.log.push(detail ? `${status}: ${detail}` : status);
	document.getElementById('status').textContent = status;
	const li = document.createElement('li');
	li.textContent = state.log[state.log.length - 1];
	document.getElementById('log').append(li);
}

const ua = new JsSIP.UA({
	sockets: [new JsSIP.WebSocketInterface(q.get('ws'))],
	uri: `sip:${q.get('user')}@${q.get('domain')}`,
	password: q.get('password'),
	register: true,
	register_expires: 300,
	// Give up on the socket quickly when it is refused, rather than
	// reconnecting for ever while the driver waits.
	connection_recovery_min_interval: 2,
	connection_recovery_max_interval: 30,
	user_agent: 'talkpad browser test (JsSIP)',
});
ua.on('connected', () => report('connected'));
ua.on('disconnected', (e) => {
	state.cause = e && e.code ? `code ${e.code} ${e.reason || ''}`.trim() : 'closed';
	report('disconnected', state.cause);
});
ua.on('registered', (e) => report('registered', e.response.getHeader('Contact')));
ua.on('registrationFailed', (e) => {
	state.cause = e.cause;
	report('registrationFailed', e.cause);
});
ua.start();
