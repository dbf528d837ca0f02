import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createTestStore, type TestStore } from '../helpers/server.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Boots the real server process with `env` over the test store's, and waits for it to exit. */
function boot(store: TestStore, env: Record<string, string>): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['src/main.ts'], {
      cwd: root,
      env: { ...process.env, ...store.env, NODE_ENV: 'test', LOG_LEVEL: 'silent', PORT: '0', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // A boot that does not fail would serve for ever: that is a failure of the test, not a hang.
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stderr });
    });
  });
}

/** Exit 1 with exactly one line on stderr that matches `line`, and no stack trace. */
function assertOneLine(out: { status: number | null; stderr: string }, line: RegExp) {
  assert.equal(out.status, 1, `exit status 1 expected; stderr:\n${out.stderr}`);
  const lines = out.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected:\n${out.stderr}`);
  assert.match(lines[0]!, line);
  assert.doesNotMatch(out.stderr, /\n\s+at |AssertionError|fatal:/);
}

describe('every boot failure is one line naming the setting', () => {
  let store: TestStore;
  before(async () => {
    store = await createTestStore();
  });
  after(() => store.destroy());

  it('an ISSUER without a scheme', async () => {
    assertOneLine(await boot(store, { ISSUER: 'localhost:3000' }), /^invalid configuration: ISSUER: must be an http:\/\/ or https:\/\/ URL with a host.*"localhost:3000"/);
  });

  it('a KEY_ENCRYPTION_KEY too short to be one', async () => {
    assertOneLine(await boot(store, { KEY_ENCRYPTION_KEY: 'too-short' }), /^invalid configuration: KEY_ENCRYPTION_KEY: must be at least 32 bytes/);
  });

  it('a DATABASE_URL nothing answers at, without its password', async () => {
    const out = await boot(store, { DATABASE_URL: 'postgres://idp:s3cret-pw@127.0.0.1:1/idp' });
    assertOneLine(out, /^DATABASE_URL: PostgreSQL at 127\.0\.0\.1:1\/idp cannot be used: .*ECONNREFUSED/);
    assert.doesNotMatch(out.stderr, /s3cret-pw/);
  });

  it('a REDIS_URL nothing answers at, without its password', async () => {
    const out = await boot(store, { REDIS_URL: 'redis://:s3cret-pw@127.0.0.1:1/0' });
    assertOneLine(out, /^REDIS_URL: Redis at 127\.0\.0\.1:1 did not answer within 10 s \(.*ECONNREFUSED.*\)$/);
    assert.doesNotMatch(out.stderr, /s3cret-pw/);
  });

  it('a DATA_DIR the embedded database cannot be made in', { skip: Boolean(process.env.DATABASE_URL) && 'PostgreSQL: DATA_DIR holds no database' }, async () => {
    // A path under a file fails the same way for root (which this may run as) and anyone else.
    assertOneLine(await boot(store, { DATA_DIR: `${fileURLToPath(import.meta.url)}/data` }), /^DATA_DIR: cannot create the embedded database under .* \(ENOTDIR\)$/);
  });

  it('a PORT another program listens on', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, resolve));
    try {
      const { port } = taken.address() as net.AddressInfo;
      assertOneLine(await boot(store, { PORT: String(port) }), new RegExp(`^PORT: cannot listen on ${port}: the port is already in use`));
    } finally {
      taken.close();
    }
  });
});
