import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root, where the idp command runs from. */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The caller's environment without any idp settings, so only what a test passes counts. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(IDP_|BOOTSTRAP_ADMIN_)/.test(k) || k === 'ISSUER' || k === 'PORT') delete env[k];
  return { ...env, ...extra };
}

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

// Children are spawned, never spawnSync'd: the server they talk to runs in this process and must
// keep answering while they wait. Every child is killed after a deadline, so no test can hang.
export function spawnIdp(args: string[], env: NodeJS.ProcessEnv): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['src/cli/main.ts', ...args], { cwd: root, env, stdio: 'pipe' });
}

export function finished(child: ChildProcessWithoutNullStreams, timeoutMs: number): Promise<Result> {
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (out.stdout += d));
  child.stderr.on('data', (d) => (out.stderr += d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, ...out });
    });
  });
}

/** One line on stderr, no stack trace. */
export function assertOneLineError(r: Result) {
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line expected:\n${r.stderr}`);
  assert.match(r.stderr, /^idp: /);
  assert.doesNotMatch(r.stderr, /\n\s+at |\.ts:\d+/);
}
