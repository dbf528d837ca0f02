/**
 * A fresh store for one benchmark server: a temporary DATA_DIR (PGlite), or on PostgreSQL a database
 * of its own (DATABASE_URL as an admin connection) and a Redis key prefix of its own, all removed by
 * destroy().
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';

export type StoreKind = 'embedded' | 'postgres';

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export interface BenchStore {
  env: Record<string, string>;
  description: string;
  destroy(): Promise<void>;
}

export async function createStore(kind: StoreKind): Promise<BenchStore> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'idp-bench-'));
  // An empty settings file, so a config/<NODE_ENV>.json of the checkout cannot change what is measured.
  const configFile = path.join(dataDir, 'bench-config.json');
  writeFileSync(configFile, '{}\n');
  const env: Record<string, string> = {
    NODE_ENV: 'development',
    CONFIG_FILE: configFile,
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
    LOGIN_RATE_LIMIT_PER_IP: '100000',
  };
  if (kind === 'embedded') {
    return {
      env,
      description: `PGlite in ${dataDir}, in-process ephemeral store`,
      async destroy() {
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }

  const adminUrl = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  const redisUrl = process.env.REDIS_URL || DEFAULT_REDIS_URL;
  const suffix = randomBytes(5).toString('hex');
  const dbName = `idp_bench_${suffix}`;
  const prefix = `idp-bench-${suffix}:`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${dbName}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  Object.assign(env, { DATABASE_URL: url.toString(), REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix });
  return {
    env,
    description: `PostgreSQL database ${dbName} (${url.host}), Redis ${new URL(redisUrl).host} prefix ${prefix}`,
    async destroy() {
      rmSync(dataDir, { recursive: true, force: true });
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      try {
        await admin.query(`drop database if exists ${dbName} with (force)`);
      } finally {
        await admin.end();
      }
      const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await redis.connect();
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          if (keys.length) await redis.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      } finally {
        redis.disconnect();
      }
    },
  };
}

/**
 * PostgreSQL's autovacuum setting ('on' or 'off'). Off, dead rows (consumed codes and refresh
 * tokens, swept tokens) are never reclaimed and statistics are refreshed only by the server's own
 * one analyze of the grown token table (src/repos/growth-analyzer.ts): not how PostgreSQL runs in
 * production, so the bench says so beside its figures.
 */
export async function autovacuumOf(databaseUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return String((await client.query<{ autovacuum: string }>('show autovacuum')).rows[0]?.autovacuum);
  } finally {
    await client.end();
  }
}
