import type { Knex } from 'knex';

export interface EventRow {
  id: string;
  /** Insertion order: the audit cursor and the live stream's resume point. */
  seq: string;
  type: string;
  tenant_id: string;
  /** The user the event is about, when there is one (kept for the per-user queries). */
  subject_id: string | null;
  actor_type: string;
  actor_id: string | null;
  target_type: string | null;
  target_id: string | null;
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  payload: Record<string, unknown>;
  occurred_at: Date;
}

export type NewEventRow = Omit<EventRow, 'seq' | 'occurred_at'>;

export function createEventsRepo(db: Knex) {
  return {
    /** Written with `trx` when the event belongs to the same transaction as the change it records. */
    async insert(row: NewEventRow, trx?: Knex.Transaction): Promise<Pick<EventRow, 'seq' | 'occurred_at'>> {
      const [inserted] = await (trx ?? db)('events')
        .insert({ ...row, payload: JSON.stringify(row.payload) })
        .returning(['seq', 'occurred_at']);
      return { seq: String(inserted.seq), occurred_at: inserted.occurred_at };
    },
  };
}

export type EventsRepo = ReturnType<typeof createEventsRepo>;
