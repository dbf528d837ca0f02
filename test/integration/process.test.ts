import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createTestStore, startTestServer, type TestStore } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const node = process.execPath;


/** The port a server process logged it listens on (it is started with PORT=0: the system picks a free one). */
function listeningPort(logs: () => string): Promise<number> {
  return waitFor('the server to log its port', () => {
    for (const line of logs().split('\n')) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line) as { msg?: string; port?: number };
      if (entry.msg === 'listening' && typeof entry.port === 'number') return entry.port;
    }
    return undefined;
  }, 60_000);
}

/** True once nothing accepts connections on the port any more. */
const refusesConnections = (port: number) =>
  new Promise<boolean>((resolve) => {
    const probe = net.connect(port, '127.0.0.1');
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', () => resolve(true));
  });

/** The published keys as `alg kid`. */
async function jwksKids(issuer: string): Promise<string[]> {
  const { keys } = (await (await fetch(new URL('/jwks', issuer))).json()) as { keys: Array<{ kid: string; alg: string }> };
  return keys.map((k) => `${k.alg} ${k.kid}`).sort();
}
const algOf = (key: string) => key.split(' ')[0]!;

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
    const child = spawn(node, ['src/main.ts'], {
      cwd: root,
      env: { ...process.env, ...store.env, PORT: '0', LOG_LEVEL: 'info', NODE_ENV: 'test' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let logs = '';
    child.stdout.on('data', (d) => (logs += d));
    child.stderr.on('data', (d) => (logs += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const port = await listeningPort(() => logs);

    // Start a request and hold back half of its body, so it is in flight when SIGTERM arrives. The
    // server's "100 Continue" tells that it has read the headers: the request is in its hands.
    const body = 'grant_type=client_credentials&client_id=nobody&client_secret=nothing';
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let response = '';
    socket.on('data', (d) => (response += d));
    const closed = new Promise((r) => socket.once('close', r));
    socket.write(
      `POST /token HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n${body.slice(0, 20)}`,
    );
    await waitFor('the server to take the request', () => /^HTTP\/1\.1 100 Continue\r\n\r\n/.test(response));
    child.kill('SIGTERM');
    await waitFor('the server to stop accepting connections', () => refusesConnections(port));
    socket.write(body.slice(20));
    await closed;
    assert.match(response.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, ''), /^HTTP\/1\.1 401/, 'the in-flight request was answered');
    assert.match(response, /invalid_client/);
    assert.equal(await exited, 0, logs);
    // Secrets of the request never reach the log.
    assert.doesNotMatch(logs, /nothing/);
  });

  it('idp migrate brings the schema up to date', () => {
    const env = { ...process.env, ...store.env, LOG_LEVEL: 'silent' };
    const migrate = spawnSync(node, ['src/cli/main.ts', 'migrate'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(migrate.status, 0, migrate.stderr);
    assert.match(migrate.stdout, /up to date/);
  });

  it('idp keys rotate adds a new signing key per algorithm to the stored key set, published next to the old ones', async () => {
    const own = await createTestStore();
    try {
      const first = await startTestServer({}, { store: own });
      const before = await jwksKids(first.issuer);
      await first.stop();
      assert.ok(before.length > 0);

      const env = { ...process.env, ...own.env, LOG_LEVEL: 'silent' };
      const rotate = spawnSync(node, ['src/cli/main.ts', 'keys', 'rotate'], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
      assert.equal(rotate.status, 0, rotate.stderr);
      assert.match(rotate.stdout, /new keys published/);

      const again = await startTestServer({}, { store: own });
      const after = await jwksKids(again.issuer);
      await again.stop();
      for (const kid of before) assert.ok(after.includes(kid), `the old key ${kid} stays published (tokens it signed still verify)`);
      const added = after.filter((kid) => !before.includes(kid));
      assert.deepEqual(added.map(algOf).sort(), before.map(algOf).sort(), `a new key for each algorithm: before ${before.join(', ')}; after ${after.join(', ')}`);
    } finally {
      await own.destroy();
    }
  });

  it('an unknown command exits 2 and a bad setting exits 1, naming it', () => {
    const env = { ...process.env, ...store.env, LOG_LEVEL: 'silent' };
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

      const env = { ...process.env, ...own.env, KEY_ENCRYPTION_KEY: keyB, PORT: '0', NODE_ENV: 'test', LOG_LEVEL: 'silent' };
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
