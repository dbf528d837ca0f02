import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { StartupError } from '../domain/errors.ts';

/**
 * The embedded store (PGlite) is one writer process, like SQLite: a second process on the same
 * files would not see the first one's writes (each keeps its own copy of the database in memory)
 * and could corrupt them. So whoever opens DATA_DIR takes this lock for the life of its process.
 */

/** Who opens the store, in the words a refused second opener is told. */
export interface DataDirOpener {
  /** What holds the lock, as the lock file and a refused opener say it: "the idp server", "idp keys rotate". */
  holder: string;
  /** What works instead, for this opener, when another process holds the store. */
  whileInUse: string;
  /** False for the CLI's local commands: a DATA_DIR without a database is a mistake, not a first start. */
  create: boolean;
}

export const SERVER_OPENER: DataDirOpener = {
  holder: 'the idp server',
  whileInUse: 'stop it first (the embedded store serves one process; several instances share DATABASE_URL)',
  create: true,
};

export interface DataDirLock {
  release(): void;
}

interface LockContent {
  pid: number;
  holder: string;
  since: string;
}

const LOCK_FILE = 'idp.lock';
/** Directories this process holds, so a second opener inside it is refused too and exit releases them. */
const held = new Set<string>();

/** PGlite's cluster under DATA_DIR/pgdata exists once initdb wrote its version file. */
export function holdsDatabase(dataDir: string): boolean {
  return existsSync(path.join(dataDir, 'pgdata', 'PG_VERSION'));
}

/**
 * Takes DATA_DIR for this process, or throws a one-line StartupError saying who holds it (or, for an
 * opener that must not create the store, that there is none) having changed nothing.
 */
export function lockDataDir(dataDir: string, opener: DataDirOpener): DataDirLock {
  const dir = path.resolve(dataDir);
  if (!opener.create && !holdsDatabase(dir)) {
    throw new StartupError(
      `DATA_DIR ${dataDir} holds no database (${dir}, from cwd ${process.cwd()}): ` +
        `run ${opener.holder} with the server's DATA_DIR; only the server creates a new embedded store`,
    );
  }
  const file = path.join(dir, LOCK_FILE);
  const mine: LockContent = { pid: process.pid, holder: opener.holder, since: new Date().toISOString() };
  const text = JSON.stringify(mine) + '\n';
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StartupError(`DATA_DIR: cannot create the embedded database under ${dataDir} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  for (let attempt = 0; ; attempt++) {
    try {
      // 'wx' fails when the file exists: of two processes creating it at once, one wins.
      writeFileSync(file, text, { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new StartupError(`DATA_DIR: cannot lock the embedded database under ${dataDir} (${code ?? err})`);
    }
    const raw = readOrEmpty(file);
    const other = parse(raw);
    if (other && isAlive(other.pid, dir)) {
      // A local command holds it for seconds; only a server needs stopping.
      const hint = other.holder === SERVER_OPENER.holder ? opener.whileInUse : 'wait for it to finish, then try again';
      throw new StartupError(`DATA_DIR ${dataDir} is in use by ${other.holder} (pid ${other.pid}): ${hint}`);
    }
    if (attempt >= 3) throw new StartupError(`DATA_DIR: cannot lock the embedded database under ${dataDir}: ${file} keeps coming back`);
    // Left by a process that died without releasing it (or unreadable): take it over, unless it
    // changed since it was read (another opener took it over first; the next attempt says so).
    if (readOrEmpty(file) === raw) unlinkQuietly(file);
  }
  held.add(dir);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    held.delete(dir);
    process.off('exit', release);
    // Only our own lock: never one another process took over after ours was removed by hand.
    if (parse(readOrEmpty(file))?.pid === process.pid) unlinkQuietly(file);
  };
  // 'exit' runs on a normal end, process.exit() (the shutdown paths) and an uncaught exception.
  // A kill -9 leaves the file behind: its pid is then dead and the next opener takes it over.
  process.on('exit', release);
  return { release };
}

/**
 * Whether the lock's process still runs. Our own pid is alive only if this process holds the
 * directory: otherwise the file is from an earlier life of a container in which we got the same pid.
 */
function isAlive(pid: number, dir: string): boolean {
  if (pid === process.pid) return held.has(dir);
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parse(raw: string): LockContent | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LockContent>;
    if (Number.isSafeInteger(v.pid) && (v.pid as number) > 0 && typeof v.holder === 'string') return v as LockContent;
  } catch {
    // Half written or not ours: treated as stale.
  }
  return undefined;
}

function readOrEmpty(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function unlinkQuietly(file: string) {
  try {
    unlinkSync(file);
  } catch {
    // Gone already.
  }
}
