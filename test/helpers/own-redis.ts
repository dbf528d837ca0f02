import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { freePort } from './server.ts';
import { waitFor } from './wait.ts';

/** Whether this machine has a redis-server binary to start private instances with. */
export const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;

/** Answers whether a Redis on `port` replies PONG within `timeoutMs`. */
function pings(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => done(chunk.toString().startsWith('+PONG')));
  });
}

/**
 * A Redis of the test's own on a private port, without persistence, that the test can pause
 * (SIGSTOP: the connection stays up and nothing answers, as in a partition or an overloaded
 * server), resume, stop and start again on the same port.
 */
export async function startOwnRedis() {
  const port = await freePort();
  let proc: ChildProcess | undefined;

  async function start() {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await waitFor(`redis-server on port ${port}`, () => pings(port), 10_000);
  }

  async function stop() {
    if (!proc || proc.exitCode !== null) return;
    const exited = once(proc, 'exit');
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    await exited;
  }

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    pause: () => proc?.kill('SIGSTOP'),
    resume: () => proc?.kill('SIGCONT'),
    start,
    stop,
  };
}

export type OwnRedis = Awaited<ReturnType<typeof startOwnRedis>>;
