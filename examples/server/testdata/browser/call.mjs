// Drives a call between two JsSIP pages in one headless Chromium, through
// the reference server, for browser_call_test.go. Each page has its own
// browser context (no shared state) and a fake microphone. It talks to the
// Go test in lines, alice's always before bob's:
//
//	stdout "registered <user> <contact>"        both pages registered over WebSocket
//	stdout "calling <target>"                   alice called
//	stdout "confirmed <user>"                   the session is up on each side
//	stdout "sdp offer same"                     bob got alice's offer as she sent it
//	stdout "sdp answer same"                    and alice bob's answer ("changed [diff]" if not)
//	stdout "connected <user> <pc>/<ice> <pair>" each peer connection connected
//	stdout "media <user> received=N sent=M"     --packets audio RTP packets each way
//	stdin  "hangup"                             alice hangs up
//	stdout "ended <user> <originator> <cause>"  both sessions ended
//	stdout "done"
//
// Usage: node call.mjs --web-root DIR --server http://127.0.0.1:PORT
//
//	--caller alice:secret --callee bob:secret --domain D
//	[--chromium /usr/bin/chromium] [--packets 50]
//
// The server serves --web-root over HTTP on its WebSocket port, so the
// pages' origin is the server's. JSSIP_DEBUG=1 in the environment puts
// JsSIP's trace, SIP messages included, on stderr.
import { chromium } from 'playwright-core';
import { bundlePage, expectLine, options } from './lib.mjs';

const opt = options('call.mjs', {
	'web-root': { type: 'string' },
	server: { type: 'string' },
	caller: { type: 'string' },
	callee: { type: 'string' },
	domain: { type: 'string' },
	chromium: { type: 'string', default: '/usr/bin/chromium' },
	// Audio packets each side must receive and send: 50 is about one
	// second of 20 ms frames.
	packets: { type: 'string', default: '50' },
}, ['web-root', 'server', 'caller', 'callee', 'domain']);
const wait = 15_000;

const root = opt['web-root'];
await bundlePage(root, 'call.js', 'call-bundle.js', 'call.html');

const browser = await chromium.launch({
	executablePath: opt.chromium,
	headless: true,
	timeout: wait,
	args: [
		'--headless',
		'--no-sandbox',
		'--disable-gpu',
		'--disable-quic',
		'--no-first-run',
		'--disable-background-networking',
		'--disable-component-update',
		'--disable-sync',
		'--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
		// A generated microphone, granted without asking.
		'--use-fake-device-for-media-stream',
		'--use-fake-ui-for-media-stream',
		'--autoplay-policy=no-user-gesture-required',
		// ICE on the loopback interface, which WebRTC skips by default;
		// the pages offer only their 127.0.0.1 candidates.
		'--allow-loopback-in-peer-connection',
		'--disable-features=WebRtcHideLocalIpsWithMdns',
	],
});

const origin = opt.server.replace(/\/$/, '');

async function openPage(account) {
	const [user, password] = account.split(':');
	const context = await browser.newContext();
	await context.grantPermissions(['microphone'], { origin });
	const page = await context.newPage();
	page.on('console', (m) => console.error(`${user} console.${m.type()}: ${m.text()}`));
	page.on('pageerror', (e) => console.error(`${user} error: ${e}`));
	const query = new URLSearchParams({ ws: `ws://${new URL(origin).host}`, user, password, domain: opt.domain, loopback: '1' });
	if (process.env.JSSIP_DEBUG) {
		query.set('debug', '1');
	}
	await page.goto(`${origin}/call.html?${query}`, { timeout: wait });
	return { user, page };
}

// until waits for pred(state) on every page, then returns each page's state.
async function until(pages, what, pred) {
	return Promise.all(
		pages.map(async ({ user, page }) => {
			try {
				await page.waitForFunction(pred, null, { timeout: wait, polling: 50 });
			} catch {
				const s = await page.evaluate(() => window.sipState);
				throw new Error(`${user}: no ${what} in ${wait} ms: ${JSON.stringify(s)}`);
			}
			return page.evaluate(() => window.sipState);
		}),
	);
}

// media polls each page's peer connection until pred(media) holds.
async function media(pages, what, pred) {
	return Promise.all(
		pages.map(async ({ user, page }) => {
			const deadline = Date.now() + wait;
			for (;;) {
				const m = await page.evaluate(() => window.sipMedia());
				if (m && pred(m)) {
					return m;
				}
				if (Date.now() > deadline) {
					throw new Error(`${user}: no ${what} in ${wait} ms: ${JSON.stringify(m)}`);
				}
				await new Promise((r) => setTimeout(r, 100));
			}
		}),
	);
}

let code = 0;
try {
	const pages = await Promise.all([openPage(opt.caller), openPage(opt.callee)]);
	const [alice, bob] = pages;
	const reg = await until(pages, 'registration', () =>
		['registered', 'registrationFailed'].includes(window.sipState.status),
	);
	reg.forEach((s, i) => {
		if (s.status !== 'registered') {
			throw new Error(`${pages[i].user} did not register: ${JSON.stringify(s)}`);
		}
		console.log(`registered ${pages[i].user} ${s.contact}`);
	});

	const target = `sip:${bob.user}@${opt.domain}`;
	await alice.page.evaluate((t) => window.sipCall(t), target);
	console.log(`calling ${target}`);
	const up = await until(pages, 'confirmed session', () =>
		['confirmed', 'ended', 'failed'].includes(window.sipState.session),
	);
	up.forEach((s, i) => {
		if (s.session !== 'confirmed') {
			throw new Error(`${pages[i].user}: session ${s.session}: ${JSON.stringify(s)}`);
		}
		console.log(`confirmed ${pages[i].user}`);
	});

	// The B2BUA passes a WebRTC offer and answer between users as they are.
	for (const [what, from, to] of [
		['offer', up[0], up[1]],
		['answer', up[1], up[0]],
	]) {
		const sent = from.sdp[`local ${what}`];
		const got = to.sdp[`remote ${what}`];
		if (!sent || !got) {
			throw new Error(`no ${what} seen: sent ${JSON.stringify(sent)}, received ${JSON.stringify(got)}`);
		}
		if (sent === got) {
			console.log(`sdp ${what} same`);
		} else {
			const a = sent.split('\r\n');
			const b = got.split('\r\n');
			const diff = [...a.filter((l) => !b.includes(l)).map((l) => `-${l}`), ...b.filter((l) => !a.includes(l)).map((l) => `+${l}`)];
			console.log(`sdp ${what} changed ${JSON.stringify(diff)}`);
		}
	}

	const ok = (m) =>
		m.connectionState === 'connected' && ['connected', 'completed'].includes(m.iceConnectionState);
	(await media(pages, 'connected peer connection', ok)).forEach((m, i) =>
		console.log(`connected ${pages[i].user} ${m.connectionState}/${m.iceConnectionState} ${m.pair}`),
	);
	const packets = Number(opt.packets);
	const flowing = (m) => m.packetsReceived >= packets && m.packetsSent >= packets;
	(await media(pages, `${packets} audio RTP packets each way`, flowing)).forEach((m, i) =>
		console.log(`media ${pages[i].user} received=${m.packetsReceived} sent=${m.packetsSent}`),
	);

	await expectLine('hangup');
	await alice.page.evaluate(() => window.sipHangup());
	const end = await until(pages, 'end of session', () => ['ended', 'failed'].includes(window.sipState.session));
	end.forEach((s, i) => {
		if (s.session !== 'ended') {
			throw new Error(`${pages[i].user}: session ${s.session}: ${JSON.stringify(s)}`);
		}
		console.log(`ended ${pages[i].user} ${s.originator} ${s.cause}`);
	});
	console.log('done');
} catch (e) {
	console.error(`call.mjs: ${e.stack || e}`);
	code = 1;
} finally {
	await browser.close();
}
process.exit(code);
