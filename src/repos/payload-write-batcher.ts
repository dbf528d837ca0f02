/** One row of an upsert, as the batch statement takes it (see payload-statements.ts, writeMany). */
export interface UpsertRow {
  model: string;
  id: string;
  /** The payload already as JSON text (checked for NUL by the caller). */
  payloadJson: string;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  account_id: string | null;
  expires_at: string | null;
}

/** The writes of one batch; `consumed` answers which of the consumes marked their row. */
export interface WriteBatch {
  upserts: UpsertRow[];
  consumes: Array<{ model: string; id: string }>;
}

type Pending =
  | { kind: 'upsert'; row: UpsertRow; resolve(value: boolean): void; reject(err: unknown): void }
  | { kind: 'consume'; row: { model: string; id: string }; resolve(value: boolean): void; reject(err: unknown): void };

const MAX_BATCH = 200;
/**
 * How long a write statement in flight holds the next batch back at most. A statement of the token
 * path takes well under a millisecond; one that runs longer is held up, and the writes behind it
 * should not share its fate for longer than this.
 */
const WAIT_FOR_STATEMENT_MS = 20;

/**
 * One upsert as a JSON object; its payload is spliced in as it is, never parsed and encoded again.
 * `more` adds fields (JSON members, already encoded).
 */
export function rowAsJson(r: UpsertRow, more = ''): string {
  return (
    `{"model":${JSON.stringify(r.model)},"id":${JSON.stringify(r.id)},"payload":${r.payloadJson},` +
    `"grant_id":${JSON.stringify(r.grant_id)},"uid":${JSON.stringify(r.uid)},"user_code":${JSON.stringify(r.user_code)},` +
    `"account_id":${JSON.stringify(r.account_id)},"expires_at":${JSON.stringify(r.expires_at)}${more ? `,${more}` : ''}}`
  );
}

/** The upserts as one JSON document. */
export function rowsAsJson(rows: UpsertRow[]): string {
  return `[${rows.map((r) => rowAsJson(r)).join(',')}]`;
}

const keyOf = (row: { model: string; id: string }) => `${row.model}\0${row.id}`;

/**
 * Coalesces the writes of the token path into one statement: the upserts as one multi-row INSERT
 * ... ON CONFLICT, the consumes as one conditional UPDATE, one round trip for all. Every caller
 * resolves only once the statement holding its row has committed, and fails if it failed; a
 * consume learns whether it was the one that marked its row. A key already in the batch waits for
 * the next one (one statement cannot change a row twice, and the later write must land later), so
 * two concurrent consumes of one token still run one after the other and exactly one wins.
 *
 * A batch is what was issued in one turn of the event loop, and while a statement is in flight
 * the next batch waits for it (group commit): the writes of concurrent requests then share a
 * statement even when they arrive a little apart, as they do under load, where each statement's
 * round trip costs the server more CPU than its rows. Alone a write goes at once. The wait is
 * bounded (`waitMs`): a statement held up (a row lock, a database that stopped answering) makes
 * the next batch wait that long at most, then it runs beside it.
 */
export function createWriteBatcher(write: (batch: WriteBatch) => Promise<Set<string>>, waitMs = WAIT_FOR_STATEMENT_MS) {
  let pending: Pending[] = [];
  let scheduled = false;
  let inFlight = 0;
  let lastStartedAt = 0;
  let waitTimer: NodeJS.Timeout | undefined;

  const schedule = () => {
    if (scheduled) return;
    const waited = performance.now() - lastStartedAt;
    if (inFlight > 0 && waited < waitMs) {
      // The statement in flight takes this batch along when it ends, or the timer does.
      waitTimer ??= setTimeout(() => {
        waitTimer = undefined;
        schedule();
      }, waitMs - waited).unref();
      return;
    }
    clearTimeout(waitTimer);
    waitTimer = undefined;
    scheduled = true;
    setImmediate(drain);
  };

  async function flush(batch: Pending[]) {
    inFlight++;
    lastStartedAt = performance.now();
    try {
      const consumed = await write({
        upserts: batch.flatMap((p) => (p.kind === 'upsert' ? [p.row] : [])),
        consumes: batch.flatMap((p) => (p.kind === 'consume' ? [p.row] : [])),
      });
      for (const p of batch) p.resolve(p.kind === 'consume' ? consumed.has(keyOf(p.row)) : true);
    } catch (err) {
      for (const p of batch) p.reject(err);
    } finally {
      inFlight--;
      if (pending.length) schedule();
    }
  }

  function drain() {
    scheduled = false;
    const all = pending;
    pending = [];
    const batch: Pending[] = [];
    const later: Pending[] = [];
    const keys = new Set<string>();
    for (const p of all) {
      const key = keyOf(p.row);
      if (batch.length >= MAX_BATCH || keys.has(key)) later.push(p);
      else {
        keys.add(key);
        batch.push(p);
      }
    }
    const done = flush(batch);
    if (later.length) {
      // Same-key writes land in the order they were issued: the rest goes after this batch committed.
      void done.then(() => {
        pending = later.concat(pending);
        schedule();
      });
    }
  }

  function enqueue(p: Pending) {
    pending.push(p);
    schedule();
  }

  return {
    upsert(row: UpsertRow): Promise<void> {
      return new Promise<boolean>((resolve, reject) => enqueue({ kind: 'upsert', row, resolve, reject })).then(() => undefined);
    },
    /** True when this call marked the row consumed, false when it already was (or is not there). */
    consume(model: string, id: string): Promise<boolean> {
      return new Promise((resolve, reject) => enqueue({ kind: 'consume', row: { model, id }, resolve, reject }));
    },
  };
}
