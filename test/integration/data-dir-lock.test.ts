import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { assertOneLineError, cleanEnv, finished, root, spawnIdp } from '../helpers/cli.ts';
import { createTestStore, onPostgres, startTestServer, stopAndDestroy, type TestServer, type TestStore } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

// The embedded store (PGlite) is one process's: the server or a local idp command locks DATA_DIR.
// On PostgreSQL there is no lock: a local command runs next to the server.

const lockFile = (store: TestStore) => path.join(store.dataDir, 'idp.lock');
const readLock = (store: TestStore) => JSON.parse(readFileSync(lockFile(store), 'utf8')) as { pid: number; holder: string };

async function jwksKids(issuer: string): Promise<string[]> {
  const { keys } = (await (await fetch(new URL('/jwks', issuer))).json()) as { keys: Array<{ kid: string }> };
  return keys.map((k) => k.kid).sort();
}

const idp = (args: string[], store: TestStore) => finished(spawnIdp(args, cleanEnv({ ...store.env, LOG_LEVEL: 'silent' })), 60_000);

/** The server as its own process (`npm start`), as the newcomer ran it; it logs the port it took. */
async function spawnServer(store: TestStore) {
  const child = spawn(process.execPath, ['src/main.ts'], {
    cwd: root,
    env: cleanEnv({ ...store.env, PORT: '0', NODE_ENV: 'test', LOG_LEVEL: 'info', ARGON2_MEMORY_KIB: '1024', ARGON2_ITERATIONS: '1' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  child.stdout.on('data', (d) => (logs += d));
  child.stderr.on('data', (d) => (logs += d));
  let gone = false;
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => ((gone = true), resolve(code))));
  const port = await waitFor('the server to log its port', () => {
    if (gone) throw new Error(`the server exited:\n${logs}`);
    const line = logs.split('\n').find((l) => l.startsWith('{') && (JSON.parse(l) as { msg?: string }).msg === 'listening');
    return line ? (JSON.parse(line) as { port: number }).port : undefined;
  }, 60_000);
  return { child, exited, issuer: `http://127.0.0.1:${port}`, logs: () => logs };
}

/** A pid no process has any more: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

describe('the embedded store is one process\'s (DATA_DIR lock)', { skip: onPostgres && 'no lock with DATABASE_URL: see the PostgreSQL test below' }, () => {
  it('while the server runs, idp keys rotate is refused with one line and changes nothing; after the server stops it works and the next start serves the new keys', async () => {
    const store = await createTestStore();
    let restarted: TestServer | undefined;
    try {
      const server = await spawnServer(store);
      const before = await jwksKids(server.issuer);
      assert.equal(readLock(store).pid, server.child.pid, 'the lock names the server');
      assert.equal(readLock(store).holder, 'the idp server');

      const rotate = await idp(['keys', 'rotate'], store);
      assert.equal(rotate.code, 1, rotate.stderr);
      assertOneLineError(rotate);
      assert.match(
        rotate.stderr,
        new RegExp(`^idp: DATA_DIR \\S+ is in use by the idp server \\(pid ${server.child.pid}\\): stop the server, run idp keys rotate, then start it again`),
      );
      assert.equal(rotate.stdout, '', 'no "new keys published"');
      const migrate = await idp(['migrate'], store);
      assert.equal(migrate.code, 1, migrate.stderr);
      assert.match(migrate.stderr, /^idp: DATA_DIR \S+ is in use by the idp server .*stop it first/);

      // A second server on the same files is refused too, with the boot's one line.
      const second = await finished(
        spawn(process.execPath, ['src/main.ts'], { cwd: root, env: cleanEnv({ ...store.env, PORT: '0', NODE_ENV: 'test' }), stdio: 'pipe' }),
        60_000,
      );
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, new RegExp(`^DATA_DIR \\S+ is in use by the idp server \\(pid ${server.child.pid}\\): stop it first.*\\n$`));

      assert.deepEqual(await jwksKids(server.issuer), before, 'the running server publishes what it did');
      assert.equal(readLock(store).pid, server.child.pid, 'the refused openers left the lock alone');

      server.child.kill('SIGTERM');
      assert.equal(await server.exited, 0, server.logs());
      assert.ok(!existsSync(lockFile(store)), 'SIGTERM releases the lock');

      const retried = await idp(['keys', 'rotate'], store);
      assert.equal(retried.code, 0, retried.stderr);
      assert.match(retried.stdout, /^new keys published/);
      assert.ok(!existsSync(lockFile(store)), 'the command releases the lock when it is done');

      restarted = await startTestServer({}, { store });
      const after = await jwksKids(restarted.issuer);
      for (const kid of before) assert.ok(after.includes(kid), 'the old keys stay published');
      assert.equal(after.length, before.length * 2, `the rotated-in keys are published: before ${before}; after ${after}`);
    } finally {
      await stopAndDestroy(restarted);
      if (!restarted) await store.destroy();
    }
  });

  describe('with a server in this process', () => {
    let ts: TestServer;
    before(async () => {
      ts = await startTestServer();
    });
    after(() => stopAndDestroy(ts));

    it('a second opener changes nothing in the database either, and another server in the same process is refused', async () => {
      const rows = async () => (await ts.server.services.db('server_keys').select('kid').orderBy('kid')).map((r) => r.kid as string);
      const stored = await rows();
      const rotate = await idp(['keys', 'rotate'], ts.store);
      assert.equal(rotate.code, 1, rotate.stderr);
      assert.match(rotate.stderr, new RegExp(`in use by the idp server \\(pid ${process.pid}\\)`));
      assert.deepEqual(await rows(), stored);
      await assert.rejects(startTestServer({}, { store: ts.store }), { message: `DATA_DIR ${ts.store.dataDir} is in use by the idp server (pid ${process.pid}): stop it first (the embedded store serves one process; several instances share DATABASE_URL)` });
      assert.deepEqual(await rows(), stored);
    });
  });

  it('a lock left by a dead process is taken over, and so is one naming our own pid that this process does not hold (a restarted container)', async () => {
    const store = await createTestStore();
    let ts: TestServer | undefined;
    try {
      writeFileSync(lockFile(store), JSON.stringify({ pid: await deadPid(), holder: 'the idp server', since: new Date().toISOString() }));
      const rotate = await idp(['keys', 'rotate'], store);
      assert.equal(rotate.code, 0, rotate.stderr);
      assert.ok(!existsSync(lockFile(store)));

      writeFileSync(lockFile(store), JSON.stringify({ pid: process.pid, holder: 'the idp server', since: new Date().toISOString() }));
      ts = await startTestServer({}, { store });
      assert.equal(readLock(store).pid, process.pid);
      await ts.stop();
      assert.ok(!existsSync(lockFile(store)), 'stop() releases the lock');
    } finally {
      await store.destroy();
    }
  });

  it('a server does not start while a local command holds the store: wait for it', async () => {
    const store = await createTestStore();
    // A live process other than this one, named in the lock as a local command.
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      writeFileSync(lockFile(store), JSON.stringify({ pid: holder.pid, holder: 'idp keys rotate', since: new Date().toISOString() }));
      await assert.rejects(startTestServer({}, { store }), {
        message: `DATA_DIR ${store.dataDir} is in use by idp keys rotate (pid ${holder.pid}): wait for it to finish, then try again`,
      });
      assert.equal(readLock(store).pid, holder.pid);
    } finally {
      holder.kill();
      await store.destroy();
    }
  });

  it('a crash releases the lock on its way out', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'idp-lock-crash-'));
    try {
      const script =
        `import { lockDataDir, SERVER_OPENER } from './src/infra/data-dir-lock.ts';` +
        `lockDataDir(${JSON.stringify(dir)}, SERVER_OPENER); throw new Error('boom');`;
      const crash = await finished(spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: root, stdio: 'pipe' }), 30_000);
      assert.equal(crash.code, 1);
      assert.match(crash.stderr, /boom/);
      assert.deepEqual(readdirSync(dir), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a local command run where there is no database says so and creates nothing', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'idp-elsewhere-'));
    try {
      for (const args of [['keys', 'rotate'], ['migrate']]) {
        const r = await finished(
          spawn(process.execPath, [path.join(root, 'src/cli/main.ts'), ...args], { cwd, env: cleanEnv({ DATA_DIR: './data', LOG_LEVEL: 'silent' }), stdio: 'pipe' }),
          60_000,
        );
        assert.equal(r.code, 1, r.stderr);
        assertOneLineError(r);
        assert.equal(
          r.stderr,
          `idp: DATA_DIR ./data holds no database (${path.join(cwd, 'data')}, from cwd ${cwd}): ` +
            `run idp ${args.join(' ')} with the server's DATA_DIR; only the server creates a new embedded store\n`,
        );
        assert.deepEqual(readdirSync(cwd), [], 'no data directory, database or key-encryption key was made');
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it("DATA_DIR's default is the checkout's data/, whatever the working directory", () => {
    assert.equal(loadConfig({}, os.tmpdir()).DATA_DIR, path.join(root, 'data'));
  });
});

describe('on PostgreSQL there is no lock', { skip: !onPostgres && 'needs DATABASE_URL' }, () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  it('idp keys rotate runs next to the server, which picks the keys up', async () => {
    const before = await jwksKids(ts.issuer);
    const rotate = await idp(['keys', 'rotate'], ts.store);
    assert.equal(rotate.code, 0, rotate.stderr);
    assert.ok(!existsSync(lockFile(ts.store)));
    assert.equal(await ts.server.reloadKeys(), true);
    assert.equal((await jwksKids(ts.issuer)).length, before.length * 2);
  });
});
