/** One row of an upsert, as the batch statement takes it (see payload-statements.ts, upsertMany). */
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

interface Pending {
  row: UpsertRow;
  resolve(): void;
  reject(err: unknown): void;
}

const MAX_BATCH = 200;

/** The batch as one JSON document; the payload is spliced in as it is, never parsed and encoded again. */
export function rowsAsJson(rows: UpsertRow[]): string {
  const parts = rows.map(
    (r) =>
      `{"model":${JSON.stringify(r.model)},"id":${JSON.stringify(r.id)},"payload":${r.payloadJson},` +
      `"grant_id":${JSON.stringify(r.grant_id)},"uid":${JSON.stringify(r.uid)},"user_code":${JSON.stringify(r.user_code)},` +
      `"account_id":${JSON.stringify(r.account_id)},"expires_at":${JSON.stringify(r.expires_at)}}`,
  );
  return `[${parts.join(',')}]`;
}

/**
 * Coalesces the upserts issued in the same turn of the event loop (concurrent token requests)
 * into one multi-row INSERT ... ON CONFLICT: one round trip and one statement for all of them.
 * Every caller resolves only once the statement holding its row has committed, and fails if it
 * failed. A key already waiting in the batch goes to the next one (PostgreSQL cannot update the
 * same row twice in one statement, and the later write must win).
 */
export function createUpsertBatcher(write: (rows: UpsertRow[]) => Promise<void>) {
  let pending: Pending[] = [];
  let scheduled = false;

  async function flush(batch: Pending[]) {
    try {
      await write(batch.map((p) => p.row));
      for (const p of batch) p.resolve();
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  function drain() {
    scheduled = false;
    let rest = pending;
    pending = [];
    while (rest.length) {
      const batch: Pending[] = [];
      const later: Pending[] = [];
      const keys = new Set<string>();
      for (const p of rest) {
        const key = `${p.row.model}\0${p.row.id}`;
        if (batch.length >= MAX_BATCH || keys.has(key)) later.push(p);
        else {
          keys.add(key);
          batch.push(p);
        }
      }
      if (later.length === 0) {
        void flush(batch);
        return;
      }
      // Same-key writes must land in order: the next batch starts after this one committed.
      const next = later;
      rest = [];
      void flush(batch).then(() => {
        pending = next.concat(pending);
        if (!scheduled) {
          scheduled = true;
          setImmediate(drain);
        }
      });
    }
  }

  return {
    upsert(row: UpsertRow): Promise<void> {
      return new Promise((resolve, reject) => {
        pending.push({ row, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(drain);
        }
      });
    },
  };
}
