/**
 * Child processes for the benchmark: servers pinned to a CPU with taskset, readiness, memory and CPU
 * sampling from /proc, and a stop that always ends them.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';

let tasksetChecked: boolean | undefined;
export function hasTaskset(): boolean {
  if (tasksetChecked === undefined) {
    try {
      execFileSync('taskset', ['-V'], { stdio: 'ignore' });
      tasksetChecked = true;
    } catch {
      tasksetChecked = false;
    }
  }
  return tasksetChecked;
}

/** Pins every thread of this process (and what it starts later) to one CPU. */
export function pinSelf(cpu: number): boolean {
  if (!hasTaskset()) return false;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

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

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

export interface ServerProcess {
  name: string;
  pid: number;
  child: ChildProcess;
  logFile: string;
  pinned: boolean;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts `node <script>` pinned to `cpu` (plain when taskset is missing), output to logFile. */
export function startNode(opts: {
  name: string;
  script: string;
  env: NodeJS.ProcessEnv;
  cwd: string;
  logFile: string;
  cpu: number;
  nodeFlags?: string[];
}): ServerProcess {
  const fd = openSync(opts.logFile, 'a');
  const pinned = hasTaskset();
  const [cmd, args] = pinned
    ? ['taskset', ['-c', String(opts.cpu), process.execPath, ...(opts.nodeFlags ?? []), opts.script]]
    : [process.execPath, [...(opts.nodeFlags ?? []), opts.script]];
  // taskset execs node, so the pid is the server's own.
  const child = spawn(cmd, args as string[], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(child);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  void exited.then(() => live.delete(child));
  return {
    name: opts.name,
    pid: child.pid!,
    child,
    logFile: opts.logFile,
    pinned,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `url` until it answers 200; fails early when the process exits. */
export async function waitReady(proc: ServerProcess, url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void proc.exited.then((c) => (exitCode = c));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`${proc.name} exited with ${exitCode} during boot; see ${proc.logFile}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${proc.name} not ready after ${timeoutMs} ms; see ${proc.logFile}`);
}

function statusField(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) the process has used. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is state (field 3); utime is field 14, stime field 15.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Busy seconds of one CPU since boot (everything but idle and iowait), from /proc/stat. */
export function cpuBusySeconds(cpu: number): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
    if (!line) return undefined;
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / 100;
  } catch {
    return undefined;
  }
}

/**
 * Peak resident memory of a process over a window: VmHWM reset at the start (clear_refs 5) and
 * read at the end, and VmRSS polled every 100 ms in case the reset is not permitted.
 */
export class MemoryWindow {
  readonly pid: number;
  #max = 0;
  #timer: NodeJS.Timeout;
  #hwmReset: boolean;
  #cpu0: number | undefined;
  #busy0: number | undefined;
  #onCpu: number;
  #t0 = performance.now();

  /** `onCpu`: the CPU the process is pinned to, to tell how much of it other processes took. */
  constructor(pid: number, onCpu = 0) {
    this.pid = pid;
    this.#onCpu = onCpu;
    this.#hwmReset = resetPeak(pid);
    this.#cpu0 = cpuSeconds(pid);
    this.#busy0 = cpuBusySeconds(onCpu);
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), 100);
  }

  #sample() {
    const rss = statusField(this.pid, 'VmRSS');
    if (rss !== undefined && rss > this.#max) this.#max = rss;
  }

  /**
   * Peak RSS in MB, the process' CPU use (1 = one core busy) and how much of its CPU other
   * processes used over the window.
   */
  end(): { peakRssMb: number; cpu: number | undefined; othersOnCpu: number | undefined } {
    clearInterval(this.#timer);
    this.#sample();
    const hwm = this.#hwmReset ? statusField(this.pid, 'VmHWM') : undefined;
    const cpu1 = cpuSeconds(this.pid);
    const busy1 = cpuBusySeconds(this.#onCpu);
    const wall = (performance.now() - this.#t0) / 1000;
    const cpu = this.#cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - this.#cpu0) / wall : undefined;
    const busy = this.#busy0 !== undefined && busy1 !== undefined ? (busy1 - this.#busy0) / wall : undefined;
    return {
      peakRssMb: Math.max(this.#max, hwm ?? 0),
      cpu,
      othersOnCpu: busy !== undefined && cpu !== undefined ? Math.max(0, busy - cpu) : undefined,
    };
  }
}

function resetPeak(pid: number): boolean {
  try {
    if (!existsSync(`/proc/${pid}/clear_refs`)) return false;
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Peak RSS over the process' whole life (VmHWM, unless reset by a window). */
export function lifetimePeakMb(pid: number): number | undefined {
  return statusField(pid, 'VmHWM');
}

/** The server log's warnings and errors (pino level ≥ 40), deduplicated by message, for the report. */
export function logExcerpt(file: string, max = 8): string[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const seen = new Map<string, { line: string; count: number }>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let key = line;
    try {
      const rec = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
      if ((rec.level ?? 0) < 40) continue;
      key = `${rec.level}:${rec.msg}:${rec.err?.message ?? ''}`;
    } catch {
      // not JSON: keep (a crash trace or a warning from a library)
    }
    const entry = seen.get(key);
    if (entry) entry.count++;
    else seen.set(key, { line: line.length > 400 ? `${line.slice(0, 400)}…` : line, count: 1 });
  }
  return [...seen.values()].slice(0, max).map((e) => (e.count > 1 ? `(${e.count}×) ${e.line}` : e.line));
}
