// Drives JsSIP in headless Chromium against the reference server, for
// browser_test.go. It talks to the Go test in lines:
//
//	stdout "registered <contact>"  page A (same origin as the WebSocket) registered
//	stdin  "close"                 close page A (its WebSocket goes with it)
//	stdout "closed"
//	stdout "refused <why>"         page B (a foreign origin) could not register
//	stdout "done"
//
// Usage: node run.mjs --web-root DIR --server http://127.0.0.1:PORT
//
//	--user U --password P --domain D [--chromium /usr/bin/chromium]
//
// The server serves --web-root over HTTP on its WebSocket port, so page A's
// origin is the server's; page B comes from a server of this script's own,
// on another port. Only loopback addresses are used.
import { chromium } from 'playwright-core';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { bundlePage, expectLine, options } from './lib.mjs';

const opt = options('run.mjs', {
	'web-root': { type: 'string' },
	server: { type: 'string' },
	user: { type: 'string' },
	password: { type: 'string' },
	domain: { type: 'string' },
	chromium: { type: 'string', default: '/usr/bin/chromium' },
}, ['web-root', 'server', 'user', 'password', 'domain']);
const wait = 20_000;

// Bundle JsSIP and the page for the browser, into the server's web root.
const root = opt['web-root'];
await bundlePage(root, 'page.js', 'bundle.js', 'index.html');

// A second origin, for the page the server must refuse.
const foreign = http.createServer(async (req, res) => {
	const name = new URL(req.url, 'http://x').pathname.slice(1) || 'index.html';
	if (name !== 'index.html' && name !== 'bundle.js') {
		res.writeHead(404).end();
		return;
	}
	const type = name.endsWith('.js') ? 'text/javascript' : 'text/html';
	res.writeHead(200, { 'Content-Type': type }).end(await readFile(path.join(root, name)));
});
await new Promise((resolve) => foreign.listen(0, '127.0.0.1', resolve));
const foreignOrigin = `http://127.0.0.1:${foreign.address().port}`;

const server = new URL(opt.server);
const query = new URLSearchParams({
	ws: `ws://${server.host}`,
	user: opt.user,
	password: opt.password,
	domain: opt.domain,
});
if (process.env.JSSIP_DEBUG) {
	// JsSIP's own trace, SIP messages included, to stderr.
	query.set('debug', '1');
}

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
		// No name lookups: every address here is the loopback literal.
		'--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
	],
});

async function openPage(origin) {
	const page = await browser.newPage();
	page.on('console', (m) => console.error(`page ${origin} console.${m.type()}: ${m.text()}`));
	page.on('pageerror', (e) => console.error(`page ${origin} error: ${e}`));
	await page.goto(`${origin}/index.html?${query}`, { timeout: wait });
	return page;
}

async function status(page) {
	return page.evaluate(() => window.sipState);
}

let code = 0;
try {
	// Page A: same origin as the WebSocket, allowed.
	const a = await openPage(opt.server.replace(/\/$/, ''));
	await a
		.waitForFunction(() => ['registered', 'registrationFailed'].includes(window.sipState?.status), null, {
			timeout: wait,
		})
		.catch(() => {});
	const sa = await status(a);
	if (sa.status !== 'registered') {
		throw new Error(`page A did not register: ${JSON.stringify(sa)}`);
	}
	console.log(`registered ${sa.log.at(-1).replace(/^registered: /, '')}`);
	await expectLine('close');
	// Closing the page closes its WebSocket; JsSIP sends no un-REGISTER.
	await a.close({ runBeforeUnload: false });
	console.log('closed');

	// Page B: a foreign origin; the upgrade must be refused.
	const b = await openPage(foreignOrigin);
	await b
		.waitForFunction(() => ['registered', 'disconnected', 'registrationFailed'].includes(window.sipState?.status), null, {
			timeout: wait,
		})
		.catch(() => {});
	const sb = await status(b);
	if (sb.status !== 'disconnected' || sb.log.includes('connected')) {
		throw new Error(`page B from ${foreignOrigin} was not refused: ${JSON.stringify(sb)}`);
	}
	console.log(`refused ${foreignOrigin} ${sb.cause}`);
	await b.close({ runBeforeUnload: false });
	console.log('done');
} catch (e) {
	console.error(`run.mjs: ${e.stack || e}`);
	code = 1;
} finally {
	await browser.close();
	foreign.close();
}
process.exit(code);
