import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.ts';
import { createLogger, type Logger } from '../../src/infra/logger.ts';
import { startServer, type RunningServer } from '../../src/runtime.ts';

/** True when the suite runs against PostgreSQL + Redis (DATABASE_URL / REDIS_URL set). */
export const onPostgres = Boolean(process.env.DATABASE_URL);

/**
 * A port that was free a moment ago. Racy (another process may bind it before the caller does):
 * only for child processes that must be told their port; in-process servers bind port 0 instead.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/**
 * PGlite's initdb takes seconds; it is done once per machine into a template directory that every
 * test file copies (a fresh cluster each time, migrated by the server at boot as usual).
 */
async function pgliteTemplate(): Promise<string> {
  const { createDb } = await import('../../src/infra/db.ts');
  // Named after the installed PGlite version, so an upgrade never reuses a cluster another version
  // made. The package's exports leave out package.json: it is read from its directory.
  const manifest = new URL('../../node_modules/@electric-sql/pglite/package.json', import.meta.url);
  const { readFileSync } = await import('node:fs');
  const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
  const root = path.join(os.tmpdir(), `idp-pglite-template-${version}`);
  const ready = path.join(root, 'pgdata');
  if (existsSync(ready)) return ready;
  const staging = mkdtempSync(path.join(os.tmpdir(), 'idp-pglite-staging-'));
  const db = createDb({ dataDir: staging, poolMax: 1 });
  await db.raw('select 1');
  await db.destroy();
  mkdirSync(root, { recursive: true });
  try {
    renameSync(path.join(staging, 'pgdata'), ready);
  } catch {
    // Another test process finished first; its template is as good as ours.
  }
  rmSync(staging, { recursive: true, force: true });
  return ready;
}

/**
 * A store of its own for one test file: a temporary DATA_DIR (PGlite) or, on PostgreSQL, a fresh
 * database created from DATABASE_URL, plus a Redis key prefix of its own.
 */
export async function createTestStore() {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idp-test-'));
  const env: Record<string, string> = { DATA_DIR: dataDir };
  if (!process.env.DATABASE_URL) cpSync(await pgliteTemplate(), path.join(dataDir, 'pgdata'), { recursive: true });
  let dbName: string | undefined;
  if (process.env.DATABASE_URL) {
    dbName = `idp_test_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    await admin.query(`create database ${dbName}`);
    await admin.end();
    const url = new URL(process.env.DATABASE_URL);
    url.pathname = `/${dbName}`;
    env.DATABASE_URL = url.toString();
  }
  if (process.env.REDIS_URL) {
    env.REDIS_URL = process.env.REDIS_URL;
    env.REDIS_KEY_PREFIX = `idp-test-${randomBytes(6).toString('hex')}:`;
  }
  return {
    env,
    dataDir,
    async destroy() {
      rmSync(dataDir, { recursive: true, force: true });
      if (dbName && process.env.DATABASE_URL) {
        const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
        await admin.connect();
        await admin.query(`drop database if exists ${dbName} with (force)`);
        await admin.end();
      }
    },
  };
}

export type TestStore = Awaited<ReturnType<typeof createTestStore>>;

export interface TestServer {
  issuer: string;
  port: number;
  server: RunningServer;
  store: TestStore;
  stop(): Promise<void>;
}

/**
 * An HTTP server already listening on 127.0.0.1: on port 0 (the system picks a free one, held from
 * then on, so no other process can take it between choosing and serving) or on a given port.
 */
export async function listenOn(port = 0): Promise<http.Server> {
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port;

/**
 * Starts the real server on a port bound first (port 0, or `existing.port` for a restart on the
 * same issuer); settings are test-friendly (cheap argon2) unless overridden.
 */
export async function startTestServer(
  /** Settings; a function gets the bound port first (for an ISSUER that names it). */
  overrides: Record<string, string> | ((port: number) => Record<string, string>) = {},
  existing?: { store?: TestStore; port?: number; logger?: Logger },
): Promise<TestServer> {
  const store = existing?.store ?? (await createTestStore());
  const listening = await listenOn(existing?.port ?? 0);
  const port = portOf(listening);
  const issuer = `http://127.0.0.1:${port}`;
  let server: RunningServer;
  try {
    const config = loadConfig({
      NODE_ENV: 'test',
      PORT: String(port),
      ISSUER: issuer,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      ARGON2_MEMORY_KIB: '1024',
      ARGON2_ITERATIONS: '1',
      LOGIN_RATE_LIMIT_PER_IP: '1000',
      ...store.env,
      ...(typeof overrides === 'function' ? overrides(port) : overrides),
    });
    server = await startServer(config, existing?.logger ?? createLogger(config.LOG_LEVEL), { port, host: '127.0.0.1', listening });
  } catch (err) {
    listening.close();
    throw err;
  }
  return {
    issuer,
    port,
    server,
    store,
    async stop() {
      await server.stop();
    },
  };
}

export async function stopAndDestroy(t: TestServer | undefined) {
  if (!t) return;
  await t.stop();
  await t.store.destroy();
}
