import type { Knex } from 'knex';
import { affectedRows, hasNul } from '../infra/db.ts';

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
}

// Rows already past expiry are hidden by find; the provider checks `exp` itself as well.
const notExpired = '(expires_at is null or expires_at > now())';

function toStored(row: { payload: unknown; consumed_at: Date | string | null } | undefined): StoredPayload | undefined {
  if (!row) return undefined;
  const payload = (typeof row.payload === 'string' ? JSON.parse(row.payload) : row.payload) as Record<string, unknown>;
  return { payload, consumedAt: row.consumed_at ? new Date(row.consumed_at) : null };
}

function grantIdsOf(payload: Record<string, unknown>): string[] {
  const authorizations = (payload.authorizations ?? {}) as Record<string, { grantId?: unknown }>;
  return Object.values(authorizations)
    .map((a) => a?.grantId)
    .filter((id): id is string => typeof id === 'string');
}

/** SQL for the oidc-provider model table; see oidc/adapter.ts for the provider-facing side. */
export function createOidcPayloadsRepo(db: Knex) {
  const table = () => db('oidc_payloads');
  return {
    async upsert(model: string, id: string, payload: object, expiresAt: Date | null, keys: PayloadKeys, device?: SessionDevice) {
      const json = JSON.stringify(payload);
      // PostgreSQL jsonb refuses \u0000; reject it as bad input rather than fail with a 500.
      // Only an escape preceded by an even run of backslashes is a NUL: "\\u0000" is a backslash and text.
      if (/(?:^|[^\\])(?:\\\\)*\\u0000/.test(json)) throw new RangeError('payload contains a NUL character');
      await table()
        .insert({
          model,
          id,
          payload: json,
          grant_id: keys.grantId ?? null,
          uid: keys.uid ?? null,
          user_code: keys.userCode ?? null,
          account_id: keys.accountId ?? null,
          expires_at: expiresAt,
          ...(device ? { user_agent: device.userAgent || null, ip_address: device.ip || null, last_used_at: db.fn.now() } : {}),
        })
        .onConflict(['model', 'id'])
        .merge([
          'payload', 'grant_id', 'uid', 'user_code', 'account_id', 'expires_at',
          ...(device ? ['user_agent', 'ip_address', 'last_used_at'] : []),
        ]);
    },
    /** Many (model, id) lookups in one statement; the result is keyed by `${model}\0${id}`. */
    async findMany(keys: Array<[model: string, id: string]>): Promise<Map<string, StoredPayload>> {
      const valid = keys.filter(([, id]) => !hasNul(id));
      if (valid.length === 0) return new Map();
      const rows = await table()
        .select('model', 'id', 'payload', 'consumed_at')
        .whereIn(['model', 'id'], valid)
        .whereRaw(notExpired);
      return new Map(rows.map((row) => [`${row.model}\0${row.id}`, toStored(row)!]));
    },
    async findByUid(model: string, uid: string) {
      if (hasNul(uid)) return undefined;
      return toStored(await table().select('payload', 'consumed_at').where({ model, uid }).whereRaw(notExpired).first());
    },
    async findByUserCode(model: string, userCode: string) {
      if (hasNul(userCode)) return undefined;
      return toStored(
        await table().select('payload', 'consumed_at').where({ model, user_code: userCode }).whereRaw(notExpired).first(),
      );
    },
    /** Marks the row consumed; returns false when another request consumed it first. */
    async consume(model: string, id: string): Promise<boolean> {
      if (hasNul(id)) return false;
      const rows = await table().where({ model, id }).whereNull('consumed_at').update({ consumed_at: db.fn.now() }, ['id']);
      return rows.length === 1;
    },
    async destroy(model: string, id: string) {
      if (hasNul(id)) return;
      await table().where({ model, id }).delete();
    },
    async grantIdOf(model: string, id: string): Promise<string | undefined> {
      if (hasNul(id)) return undefined;
      const row = await table().select('grant_id').where({ model, id }).first();
      return row?.grant_id ?? undefined;
    },
    /** Deletes a model's rows of one grant in batches so a huge grant never holds a long lock. */
    async revokeByGrantId(grantId: string, model?: string, batch = 500) {
      if (hasNul(grantId)) return;
      for (;;) {
        const sub = table().select('model', 'id').where({ grant_id: grantId }).limit(batch);
        if (model) sub.andWhere({ model });
        const deleted = affectedRows(await table().whereIn(['model', 'id'], sub).delete());
        if (deleted < batch) return;
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
        .whereRaw(notExpired)
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
    /** Deletes expired rows in batches; returns how many went. */
    async sweepExpired(trx: Knex.Transaction, graceSeconds: number, batch = 1000): Promise<number> {
      let total = 0;
      for (;;) {
        const sub = trx('oidc_payloads')
          .select('model', 'id')
          .whereRaw('expires_at < now() - make_interval(secs => ?)', [graceSeconds])
          .limit(batch);
        const deleted = affectedRows(await trx('oidc_payloads').whereIn(['model', 'id'], sub).delete());
        total += deleted;
        if (deleted < batch) return total;
      }
    },
  };
}

export type OidcPayloadsRepo = ReturnType<typeof createOidcPayloadsRepo>;
