/**
 * How the bench's scripts (run.ts, ab.ts) start servers and what they ask them: `npm start`'s
 * command, the children's environment, the seeded store, and the token requests measured.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { configSchema } from '../src/config/schema.ts';
import type { Seeded } from './seed.ts';

export const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * `npm start` (package.json), split: the environment it sets (`NAME=value` before `node`), the
 * Node flags, and the command from `node` on. The bench runs both servers with the first two, so it
 * measures what ships; the image's CMD and ENV must match (test/unit/start-command.test.ts).
 */
export function startCommand(root = ROOT): { env: Record<string, string>; nodeFlags: string[]; argv: string[] } {
  const parts = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start.split(/\s+/);
  const node = parts.indexOf('node');
  return {
    env: Object.fromEntries(parts.slice(0, node).map((part) => [part.slice(0, part.indexOf('=')), part.slice(part.indexOf('=') + 1)])),
    nodeFlags: parts.filter((part) => part.startsWith('--')),
    argv: parts.slice(node),
  };
}

const START_ENV = startCommand().env;

/** The children's environment: ours, with every setting of the parent's environment removed, and npm start's. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(configSchema.shape)) delete env[key];
  delete env.CONFIG_FILE;
  return { ...env, ...START_ENV, ...extra };
}

export function execNode(script: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script], { cwd: ROOT, env, timeout: 120_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(script)} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Seeds a fresh store (bench/seed.ts, with the server's environment) and answers what it made. */
export async function seedStore(storeEnv: Record<string, string>): Promise<Seeded> {
  const out = await execNode(path.join(ROOT, 'bench', 'seed.ts'), childEnv(storeEnv));
  return JSON.parse(out.trim().split('\n').pop()!) as Seeded;
}

export const FORM = 'application/x-www-form-urlencoded';
/** The resource server bench/seed.ts registers (and bench/baseline.ts serves): JWT access tokens. */
export const RESOURCE = 'https://api.bench.test';
/** The client_credentials requests measured: a JWT for RESOURCE, and an opaque token without it. */
export const TOKEN_BODY = {
  jwt: `grant_type=client_credentials&resource=${encodeURIComponent(RESOURCE)}&scope=read`,
  opaque: 'grant_type=client_credentials&scope=read',
};
