import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createTestStore, freePort, startTestServer, type TestStore } from '../helpers/server.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const node = process.execPath;


async function waitFor(url: string, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

describe('the server process and the CLI', () => {
  let store: TestStore;
  before(async () => {
    store = await createTestStore();
  });
  after(() => store.destroy());

  it('a wrong setting stops the boot with a message naming it', () => {
    const out = spawnSync(node, ['src/main.ts'], {
      cwd: root,
      env: { ...process.env, ...store.env, PORT: 'abc', LOCKOUT_THRESHOLD: '-3' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(out.status, 1);
    assert.match(out.stderr, /PORT/);
    assert.match(out.stderr, /LOCKOUT_THRESHOLD/);
  });

  it('SIGTERM lets an in-flight request finish, then exits 0', async () => {
    const port = await freePort();
    const child = spawn(node, ['src/main.ts'], {
      cwd: root,
      env: { ...process.env, ...store.env, PORT: String(port), LOG_LEVEL: 'warn', NODE_ENV: 'test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let logs = '';
    child.stdout.on('data', (d) => (logs += d));
    child.stderr.on('data', (d) => (logs += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(`http://127.0.0.1:${port}/healthz`);

    // Start a request and hold back half of its body, so it is in flight when SIGTERM arrives.
    const body = 'grant_type=client_credentials&client_id=nobody&client_secret=nothing';
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let response = '';
    socket.on('data', (d) => (response += d));
    const closed = new Promise((r) => socket.once('close', r));
    socket.write(
      `POST /token HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.slice(0, 20)}`,
    );
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    socket.write(body.slice(20));
    await closed;
    assert.match(response, /^HTTP\/1\.1 401/, 'the in-flight request was answered');
    assert.match(response, /invalid_client/);
    assert.equal(await exited, 0, logs);
    // Secrets of the request never reach the log.
    assert.doesNotMatch(logs, /nothing/);
  });

  it('idp migrate and idp keys rotate work against the store; errors exit non-zero', () => {
    const env = { ...process.env, ...store.env, LOG_LEVEL: 'silent' };
    const migrate = spawnSync(node, ['src/cli/main.ts', 'migrate'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(migrate.status, 0, migrate.stderr);
    assert.match(migrate.stdout, /up to date/);
    const rotate = spawnSync(node, ['src/cli/main.ts', 'keys', 'rotate'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(rotate.status, 0, rotate.stderr);
    assert.match(rotate.stdout, /new keys published/);
    const unknown = spawnSync(node, ['src/cli/main.ts', 'frobnicate'], { cwd: root, env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command/);
    const badConfig = spawnSync(node, ['src/cli/main.ts', 'migrate'], {
      cwd: root,
      env: { ...env, DATABASE_URL: 'mysql://nope' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(badConfig.status, 1);
    assert.match(badConfig.stderr, /DATABASE_URL/);
  });

  it('another KEY_ENCRYPTION_KEY than the one that sealed the stored keys stops the server and the CLI with one line', async () => {
    const own = await createTestStore();
    try {
      const keyA = randomBytes(32).toString('base64url');
      const keyB = randomBytes(32).toString('base64url');
      const first = await startTestServer({ KEY_ENCRYPTION_KEY: keyA }, { store: own });
      await first.stop();

      const env = { ...process.env, ...own.env, KEY_ENCRYPTION_KEY: keyB, PORT: String(await freePort()), NODE_ENV: 'test', LOG_LEVEL: 'silent' };
      const server = spawnSync(node, ['src/main.ts'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
      assert.equal(server.status, 1, server.stderr);
      const lines = server.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line expected:\n${server.stderr}`);
      assert.match(lines[0]!, /^KEY_ENCRYPTION_KEY does not open the stored signing keys: they were sealed with another key/);
      assert.doesNotMatch(server.stderr, /decipher|authenticate data|\n\s+at /);

      const cli = spawnSync(node, ['src/cli/main.ts', 'keys', 'rotate'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
      assert.equal(cli.status, 1, cli.stderr);
      assert.match(cli.stderr, /^idp: KEY_ENCRYPTION_KEY does not open the stored signing keys.*\n$/);

      // The right key still boots, and nothing was added under the wrong one.
      const again = await startTestServer({ KEY_ENCRYPTION_KEY: keyA }, { store: own });
      assert.equal((await (await fetch(new URL('/jwks', again.issuer))).json()).keys.length, 2);
      await again.stop();
    } finally {
      await own.destroy();
    }
  });
});
