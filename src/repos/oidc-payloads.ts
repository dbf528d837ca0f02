import type { Knex } from 'knex';
import { hasNul, runStatement, type Db } from '../infra/db.ts';
import { createGrowthAnalyzer } from './growth-analyzer.ts';
import * as statements from './payload-statements.ts';
import { createWriteBatcher, rowAsJson, rowsAsJson, type UpsertRow } from './payload-write-batcher.ts';
import { userFromJson, type UserRow } from './users.ts';

export interface PayloadKeys {
  grantId?: string | undefined;
  uid?: string | undefined;
  userCode?: string | undefined;
  accountId?: string | undefined;
}

/** Where a session was last used from; kept for the user's sessions list. */
export interface SessionDevice {
  userAgent?: string | undefined;
  ip?: string | undefined;
}

export interface SessionRow {
  id: string;
  uid: string;
  payload: Record<string, unknown>;
  userAgent: string | null;
  ip: string | null;
  lastUsedAt: Date | null;
  createdAt: Date;
  expiresAt: Date | null;
}

export interface StoredPayload {
  payload: Record<string, unknown>;
  consumedAt: Date | null;
  /** Read with the row when asked (findMany's withGrant): the Grant row its grant_id names. */
  grant?: StoredPayload & { id: string };
  /** Read with the row when asked (findMany's withAccount): the users row its account_id names. */
  account?: UserRow;
  /** Read with the row when asked (findMany's withSession): the Session its payload's sessionUid names. */
  session?: StoredPayload & { uid: string };
}

type StoredRow = { payload: unknown; consumed_at: Date | string | null };

function parseJson(value: unknown): Record<string, unknown> {
  return (typeof value === 'string' ? JSON.parse(value) : value) as Record<string, unknown>;
}

function toStored(row: StoredRow | undefined): StoredPayload | undefined {
  if (!row) return undefined;
  const payload = parseJson(row.payload);
  return { payload, consumedAt: row.consumed_at ? new Date(row.consumed_at) : null };
}

function grantIdsOf(payload: Record<string, unknown>): string[] {
  const authorizations = (payload.authorizations ?? {}) as Record<string, { grantId?: unknown }>;
  return Object.values(authorizations)
    .map((a) => a?.grantId)
    .filter((id): id is string => typeof id === 'string');
}

/**
 * One sweeper batch ($1 grace seconds, $2 rows at most, $3 the expiry the previous batch stopped
 * at). The inner select walks the oidc_payloads_expires index from $3, so each batch reads only the
 * rows it deletes: an unordered LIMIT lets the planner pick a sequential scan from the table's
 * first page, and a walk from the index's low end, both of which reread what earlier batches left
 * dead until vacuum comes, so a large backlog costs quadratic time. The delete goes straight to
 * those tuples by ctid, without a second primary-key lookup each, and checks the expiry again on the
 * row as it is then: a row whose expiry an upsert moved is kept. bench/plans.ts explains it.
 */
export const SWEEP_BATCH_SQL =
  `with gone as (delete from oidc_payloads where ctid = any(array(select ctid from oidc_payloads ` +
  `where expires_at < now() - make_interval(secs => $1) and expires_at >= $3::timestamptz order by expires_at limit $2)) ` +
  `and expires_at < now() - make_interval(secs => $1) returning expires_at) select count(*)::int as deleted, max(expires_at) as last from gone`;

/**
 * A row to write, checked: PostgreSQL jsonb refuses \u0000, so a payload or id holding one is
 * refused as bad input (RangeError) rather than failing with a 500.
 */
export function upsertRow(model: string, id: string, payload: object, expiresAt: Date | null, keys: PayloadKeys): UpsertRow {
  const json = JSON.stringify(payload);
  // Only an escape preceded by an even run of backslashes is a NUL: "\\u0000" is a backslash and text.
  if (/(?:^|[^\\])(?:\\\\)*\\u0000/.test(json)) throw new RangeError('payload contains a NUL character');
  // The keys are copied from the payload, checked above; the id is the provider's or a digest.
  if (hasNul(id)) throw new RangeError('id contains a NUL character');
  return {
    model,
    id,
    payloadJson: json,
    grant_id: keys.grantId ?? null,
    uid: keys.uid ?? null,
    user_code: keys.userCode ?? null,
    account_id: keys.accountId ?? null,
    expires_at: expiresAt ? expiresAt.toISOString() : null,
  };
}

/** Rows an instance writes before it checks the table's statistics once (growth-analyzer.ts). */
export const ANALYZE_AFTER_ROWS = 2_000;

/** SQL for the oidc-provider model table; see oidc/adapter.ts for the provider-facing side. */
export function createOidcPayloadsRepo(db: Db) {
  const table = () => db('oidc_payloads');
  // Past the size where the token path's cached plans stop scanning the table (growth-analyzer.ts).
  const growth = createGrowthAnalyzer(db, 'oidc_payloads', ANALYZE_AFTER_ROWS);
  const writes = createWriteBatcher(async ({ upserts, consumes }) => {
    const { rows } = await runStatement(db, statements.writeMany, [
      rowsAsJson(upserts),
      consumes.map((c) => c.model),
      consumes.map((c) => c.id),
    ]);
    growth.wrote(upserts.length);
    return new Set(rows.map((row) => `${row.model}\0${row.id}`));
  });
  return {
    async upsert(model: string, id: string, payload: object, expiresAt: Date | null, keys: PayloadKeys, device?: SessionDevice) {
      const row = upsertRow(model, id, payload, expiresAt, keys);
      if (!device) return writes.upsert(row);
      await runStatement(db, statements.upsertSession, [
        model, id, row.payloadJson, row.grant_id, row.uid, row.user_code, row.account_id, row.expires_at,
        device.userAgent || null, device.ip || null,
      ]);
    },
    /**
     * Many (model, id) lookups in one statement; the result is keyed by `${model}\0${id}`. A row
     * of a model in `withGrant` carries its grant's row, of one in `withAccount` its account's, of
     * one in `withSession` its session's.
     */
    async findMany(
      keys: Array<[model: string, id: string]>,
      withGrant: readonly string[] = [],
      withAccount: readonly string[] = [],
      withSession: readonly string[] = [],
    ): Promise<Map<string, StoredPayload>> {
      const valid = keys.filter(([, id]) => !hasNul(id));
      if (valid.length === 0) return new Map();
      const models = valid.map(([model]) => model);
      const ids = valid.map(([, id]) => id);
      const { rows } = await runStatement(db, statements.findMany, [models, ids, withGrant, withAccount, withSession]);
      return new Map(
        rows.map((row) => {
          const stored = toStored(row as StoredRow)!;
          if (row.grant_payload != null) {
            stored.grant = { id: row.grant_id as string, ...toStored({ payload: row.grant_payload, consumed_at: row.grant_consumed_at as Date | null })! };
          }
          if (row.account != null) stored.account = userFromJson(parseJson(row.account));
          if (row.session_payload != null) {
            stored.session = { uid: row.session_uid as string, ...toStored({ payload: row.session_payload, consumed_at: row.session_consumed_at as Date | null })! };
          }
          return [`${row.model}\0${row.id}`, stored];
        }),
      );
    },
    async findByUid(model: string, uid: string) {
      if (hasNul(uid)) return undefined;
      return toStored((await runStatement(db, statements.findByUid, [model, uid])).rows[0] as StoredRow | undefined);
    },
    async findByUserCode(model: string, userCode: string) {
      if (hasNul(userCode)) return undefined;
      return toStored((await runStatement(db, statements.findByUserCode, [model, userCode])).rows[0] as StoredRow | undefined);
    },
    /** Marks the row consumed; returns false when another request consumed it first. */
    async consume(model: string, id: string): Promise<boolean> {
      if (hasNul(id)) return false;
      return writes.consume(model, id);
    },
    /**
     * Writes what a request held (oidc/held-writes.ts) in one statement: false when its consume
     * lost (the token was consumed before), and then nothing was written.
     */
    async writeHeld(held: {
      consume?: { model: string; key: string };
      upserts: Iterable<{ row: UpsertRow; device?: SessionDevice }>;
      deletes: Iterable<{ model: string; key: string }>;
    }): Promise<boolean> {
      const deletes = [...held.deletes].filter((d) => !hasNul(d.key));
      if (held.consume && hasNul(held.consume.key)) return false;
      const rows = [...held.upserts].map(({ row, device }) =>
        rowAsJson(row, device ? `"user_agent":${JSON.stringify(device.userAgent || null)},"ip_address":${JSON.stringify(device.ip || null)},"touched":true` : ''),
      );
      const { rows: answer } = await runStatement(db, statements.writeHeld, [
        `[${rows.join(',')}]`,
        held.consume?.model ?? null,
        held.consume?.key ?? null,
        deletes.map((d) => d.model),
        deletes.map((d) => d.key),
      ]);
      growth.wrote(rows.length);
      return answer[0]?.ok === true;
    },
    async destroy(model: string, id: string) {
      if (hasNul(id)) return;
      await runStatement(db, statements.destroy, [model, id]);
    },
    async grantIdOf(model: string, id: string): Promise<string | undefined> {
      if (hasNul(id)) return undefined;
      const row = (await runStatement(db, statements.grantIdOf, [model, id])).rows[0];
      return (row?.grant_id as string | null | undefined) ?? undefined;
    },
    /** Deletes a model's rows of one grant in batches so a huge grant never holds a long lock. */
    async revokeByGrantId(grantId: string, model?: string, batch = 500) {
      if (hasNul(grantId)) return;
      for (;;) {
        const { rowCount } = model
          ? await runStatement(db, statements.revokeModelByGrantId, [grantId, batch, model])
          : await runStatement(db, statements.revokeByGrantId, [grantId, batch]);
        if (rowCount < batch) return;
      }
    },
    async revokeByAccountId(accountId: string) {
      const grants = await table().distinct('grant_id').where({ account_id: accountId }).whereNotNull('grant_id');
      for (const { grant_id } of grants) await this.revokeByGrantId(grant_id as string);
      await table().where({ account_id: accountId }).delete();
    },
    /**
     * Ends everything issued to a client (it is being deleted): its grants with every token tied
     * to them, then whatever else names the client (client_credentials tokens, codes, ...). A
     * client_id registered again later starts with nothing. Payloads carry `clientId`; no column
     * indexes it, which is fine for a rare operator action.
     */
    async revokeByClientId(clientId: string) {
      if (hasNul(clientId)) return;
      const ofClient = () => table().whereRaw(`payload->>'clientId' = ?`, [clientId]);
      const grants = await ofClient().select('id').where({ model: 'Grant' });
      for (const { id } of grants) {
        await this.revokeByGrantId(id as string);
        await this.destroy('Grant', id as string);
      }
      await ofClient().whereNot({ model: 'Session' }).delete();
    },
    /** The live sessions of an account, most recently used first. */
    async listSessions(accountId: string): Promise<SessionRow[]> {
      const rows = await table()
        .select('id', 'uid', 'payload', 'user_agent', 'ip_address', 'last_used_at', 'created_at', 'expires_at')
        .where({ model: 'Session', account_id: accountId })
        .whereRaw(statements.notExpired('oidc_payloads'))
        .orderByRaw('coalesce(last_used_at, created_at) desc');
      return rows.map((row) => ({
        id: row.id as string,
        uid: row.uid as string,
        payload: toStored({ payload: row.payload, consumed_at: null })!.payload,
        userAgent: row.user_agent ?? null,
        ip: row.ip_address ?? null,
        lastUsedAt: row.last_used_at ? new Date(row.last_used_at) : null,
        createdAt: new Date(row.created_at),
        expiresAt: row.expires_at ? new Date(row.expires_at) : null,
      }));
    },
    /**
     * Ends one session: the session row and every grant (with its tokens) authorized in it. The
     * grant ids come from the session's payload (`authorizations[clientId].grantId`).
     */
    async revokeSession(session: Pick<SessionRow, 'id' | 'payload'>) {
      for (const grantId of grantIdsOf(session.payload)) {
        await this.revokeByGrantId(grantId);
        await this.destroy('Grant', grantId);
      }
      await this.destroy('Session', session.id);
    },
    /**
     * Ends every session, grant and token of an account except one session and the grants
     * authorized in it (the user's current sign-in, after they changed their password).
     */
    async revokeAccountExcept(accountId: string, keepSessionId: string | undefined) {
      const sessions = await this.listSessions(accountId);
      const kept = sessions.find((s) => s.id === keepSessionId);
      const keepGrants = new Set(kept ? grantIdsOf(kept.payload) : []);
      for (const session of sessions) if (session !== kept) await this.revokeSession(session);
      const grants = await table().distinct('grant_id').where({ account_id: accountId }).whereNotNull('grant_id');
      for (const { grant_id } of grants) {
        if (keepGrants.has(grant_id as string)) continue;
        await this.revokeByGrantId(grant_id as string);
      }
      // Grant rows carry no grant_id column (their id is the grant id), so they go by id.
      const grantRows = table().where({ account_id: accountId, model: 'Grant' });
      if (keepGrants.size) grantRows.whereNotIn('id', [...keepGrants]);
      await grantRows.delete();
    },
    /**
     * One batch of the sweeper (oidc/sweeper.ts): up to `batch` rows expired over `graceSeconds`
     * ago, oldest expiry first from `from` on; the rows deleted and the last expiry among them.
     */
    async sweepBatch(trx: Knex.Transaction, graceSeconds: number, from: string, batch: number): Promise<{ deleted: number; last: string | null }> {
      const values = [graceSeconds, batch, from];
      const bindings: unknown[] = [];
      const sql = SWEEP_BATCH_SQL.replace(/\$(\d)/g, (_, n: string) => {
        bindings.push(values[Number(n) - 1]);
        return '?';
      });
      const result = (await trx.raw(sql, bindings as Knex.ValueDict[])) as { rows: Array<{ deleted: number; last: Date | string | null }> };
      const row = result.rows[0];
      return { deleted: Number(row?.deleted ?? 0), last: row?.last ? new Date(row.last).toISOString() : null };
    },
  };
}

export type OidcPayloadsRepo = ReturnType<typeof createOidcPayloadsRepo>;
