/**
 * A fresh store for one benchmark server: a temporary DATA_DIR (PGlite), or on PostgreSQL a database
 * of its own (DATABASE_URL as an admin connection) and a Redis key prefix of its own, all removed by
 * destroy().
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
 * PostgreSQL and Redis moved onto `cpu` (the load generator's) for the run, when they run on this
 * machine and taskset may move them: otherwise their processes take turns with our server on its
 * CPU (the warnings said 20-40% of it), and the figures would measure them as much as it. A
 * deployment has them on hosts of their own. The postmaster's new backends inherit its mask; its
 * running children are moved too. Answers a description and a restore function (masks as found).
 */
export async function pinStoreProcesses(store: BenchStore, cpu: number): Promise<{ description: string; restore(): void } | undefined> {
  const databaseUrl = store.env.DATABASE_URL;
  const redisUrl = store.env.REDIS_URL;
  if (!databaseUrl || !redisUrl) return undefined;
  const pids: number[] = [];
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const backend = Number((await client.query('select pg_backend_pid() as pid')).rows[0].pid);
    const postmaster = parentOf(backend);
    if (postmaster) pids.push(postmaster, ...childrenOf(postmaster));
  } finally {
    await client.end();
  }
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const info = await redis.info('server');
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    if (pid) pids.push(pid);
  } finally {
    redis.disconnect();
  }
  const found = new Map<number, string>();
  for (const pid of pids) {
    try {
      // Threads too (-a): Redis has a few.
      const before = execFileSync('taskset', ['-p', String(pid)], { encoding: 'utf8' }).trim().split(' ').pop()!;
      execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
      found.set(pid, before);
    } catch {
      // Not ours to move (another user's process, or gone): measured where it runs.
    }
  }
  if (!found.size) return undefined;
  return {
    description: `PostgreSQL and Redis (${found.size} processes) pinned to CPU ${cpu} for the run`,
    restore() {
      for (const [pid, mask] of found) {
        try {
          execFileSync('taskset', ['-a', '-p', mask, String(pid)], { stdio: 'ignore' });
        } catch {
          // Ended meanwhile (a backend whose connection closed).
        }
      }
    },
  };
}

function parentOf(pid: number): number | undefined {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after the ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
