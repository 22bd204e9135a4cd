// Shared by the browser test drivers (run.mjs, call.mjs): options,
// commands from the Go test on stdin, and the page bundle.
import * as esbuild from 'esbuild';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const here = path.dirname(fileURLToPath(import.meta.url));

// options parses the command line; the required ones must be set.
export function options(script, spec, required) {
	const { values } = parseArgs({ options: spec });
	for (const k of required) {
		if (!values[k]) {
			console.error(`${script}: --${k} is required`);
			process.exit(2);
		}
	}
	return values;
}

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// expectLine waits for the Go test's next command.
export async function expectLine(want) {
	const { value, done } = await lines.next();
	if (done || value.trim() !== want) {
		throw new Error(`expected "${want}" on stdin, got ${done ? 'EOF' : JSON.stringify(value)}`);
	}
}

// bundlePage bundles JsSIP and a page script for the browser into the
// server's web root, next to the page's HTML.
export async function bundlePage(root, script, bundle, html) {
	await esbuild.build({
		entryPoints: [path.join(here, script)],
		bundle: true,
		format: 'iife',
		platform: 'browser',
		target: 'es2020',
		outfile: path.join(root, bundle),
		logLevel: 'warning',
	});
	await copyFile(path.join(here, html), path.join(root, html));
}
