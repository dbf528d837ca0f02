import type { Knex } from 'knex';
import { runStatement, type Db, type Statement } from '../infra/db.ts';

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

const COLUMNS = ['id', 'type', 'tenant_id', 'subject_id', 'actor_type', 'actor_id', 'target_type', 'target_id', 'ip', 'user_agent', 'request_id', 'payload'] as const;
// Every column of a new event is written: this fails to compile when NewEventRow gains one COLUMNS lacks.
const allColumns: Exclude<keyof NewEventRow, (typeof COLUMNS)[number]> extends never ? true : never = true;
void allColumns;

/**
 * An event outside a transaction (a sign-in's, most of them) as a named statement (runStatement):
 * the query builder cost more CPU than the rest of the insert on the sign-in path.
 */
const insertStatement: Statement = {
  name: 'events_insert_v1',
  text: `insert into events (${COLUMNS.join(', ')}) values (${COLUMNS.map((c, i) => `$${i + 1}${c === 'payload' ? '::jsonb' : ''}`).join(', ')}) returning seq, occurred_at`,
};

export function createEventsRepo(db: Db) {
  return {
    /** Written with `trx` when the event belongs to the same transaction as the change it records. */
    async insert(row: NewEventRow, trx?: Knex.Transaction): Promise<Pick<EventRow, 'seq' | 'occurred_at'>> {
      const [inserted] = trx
        ? await trx('events').insert({ ...row, payload: JSON.stringify(row.payload) }).returning(['seq', 'occurred_at'])
        : ((await runStatement(db, insertStatement, COLUMNS.map((c) => (c === 'payload' ? JSON.stringify(row.payload) : row[c])))).rows as Array<
            Pick<EventRow, 'seq' | 'occurred_at'>
          >);
      return { seq: String(inserted!.seq), occurred_at: inserted!.occurred_at };
    },
  };
}

export type EventsRepo = ReturnType<typeof createEventsRepo>;

/** Which events a listing keeps; every part given must hold. */
export interface EventQuery {
  /** Only this tenant's events (every admin listing names one). */
  tenantId?: string;
  /** Exact types and type prefixes ("user." for user.*); an event matching any of them is kept. */
  types?: { exact: string[]; prefixes: string[] };
  actor?: Party;
  target?: Party;
  /** One user's events: those about them (target or subject) and those they caused (actor). */
  user?: string;
  /** occurred_at >= from */
  from?: Date;
  /** occurred_at < to */
  to?: Date;
}

/** An actor or a target as a filter: its type, its id, or both. */
export interface Party {
  type?: string;
  id?: string;
}

// Any constant distinct from the sweeper's: one instance at a time sweeps old events.
const AUDIT_SWEEP_LOCK = 0x1d9_a0d7;

function rowOf(row: EventRow): EventRow {
  return {
    ...row,
    seq: String(row.seq),
    payload: typeof row.payload === 'string' ? (JSON.parse(row.payload) as Record<string, unknown>) : row.payload,
  };
}

function whereParty(q: Knex.QueryBuilder, columns: { type: string; id: string }, party: Party) {
  if (party.type !== undefined) q.where(columns.type, party.type);
  if (party.id !== undefined) q.where(columns.id, party.id);
}

export function createEventsReader(db: Knex) {
  return {
    /**
     * Newest first, below `beforeSeq` when given (keyset on seq: rows inserted meanwhile get
     * higher seqs and never shift a page), at most `limit` rows.
     */
    async list(query: EventQuery, beforeSeq: string | undefined, limit: number): Promise<EventRow[]> {
      const q = db<EventRow>('events').select('*').orderBy('seq', 'desc').limit(limit);
      if (beforeSeq !== undefined) q.where('seq', '<', beforeSeq);
      const { tenantId, types, actor, target, user, from, to } = query;
      if (tenantId !== undefined) q.where('tenant_id', tenantId);
      if (types && (types.exact.length || types.prefixes.length)) {
        q.where((w) => {
          if (types.exact.length) w.orWhereIn('type', types.exact);
          for (const prefix of types.prefixes) w.orWhereRaw('starts_with(type, ?)', [prefix]);
        });
      }
      if (actor) whereParty(q, { type: 'actor_type', id: 'actor_id' }, actor);
      if (target) whereParty(q, { type: 'target_type', id: 'target_id' }, target);
      if (user !== undefined) {
        // Three indexed conditions (events_subject, events_target, events_actor), OR-ed by the planner.
        q.where((w) =>
          w
            .where('subject_id', user)
            .orWhere((t) => t.where('target_type', 'user').where('target_id', user))
            .orWhere((a) => a.where('actor_type', 'user').where('actor_id', user)),
        );
      }
      if (from) q.where('occurred_at', '>=', from);
      if (to) q.where('occurred_at', '<', to);
      return (await q).map(rowOf);
    },
    /** Oldest first from just after `seq`: resuming a stream, and each instance's tail of the table. */
    async after(seq: string, limit: number): Promise<EventRow[]> {
      const rows = await db<EventRow>('events').select('*').where('seq', '>', seq).orderBy('seq', 'asc').limit(limit);
      return rows.map(rowOf);
    },
    /** The highest seq written so far ('0' for none). */
    async latestSeq(): Promise<string> {
      const row = await db('events').max({ seq: 'seq' }).first();
      return row?.seq == null ? '0' : String(row.seq);
    },
    /**
     * Deletes up to `batch` events older than `cutoff`, oldest first through events_occurred, in a
     * short transaction of its own; undefined when another instance is sweeping (it holds the lock).
     */
    async sweepOlderThan(cutoff: Date, batch: number): Promise<number | undefined> {
      return db.transaction(async (trx) => {
        const { rows } = (await trx.raw('select pg_try_advisory_xact_lock(?) as locked', [AUDIT_SWEEP_LOCK])) as {
          rows: Array<{ locked: boolean }>;
        };
        if (!rows[0]?.locked) return undefined;
        const result = (await trx.raw(
          'with gone as (delete from events where ctid = any(array(select ctid from events where occurred_at < ? ' +
            'order by occurred_at limit ?)) returning 1) select count(*)::int as deleted from gone',
          [cutoff, batch],
        )) as { rows: Array<{ deleted: number }> };
        return Number(result.rows[0]?.deleted ?? 0);
      });
    },
  };
}

export type EventsReader = ReturnType<typeof createEventsReader>;
