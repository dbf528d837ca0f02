import type { Knex } from 'knex';
import { affectedRows, hasNul } from '../infra/db.ts';

export interface PayloadKeys {
  grantId?: string | undefined;
  uid?: string | undefined;
  userCode?: string | undefined;
  accountId?: string | undefined;
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

/** SQL for the oidc-provider model table; see oidc/adapter.ts for the provider-facing side. */
export function createOidcPayloadsRepo(db: Knex) {
  const table = () => db('oidc_payloads');
  return {
    async upsert(model: string, id: string, payload: object, expiresAt: Date | null, keys: PayloadKeys) {
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
        })
        .onConflict(['model', 'id'])
        .merge(['payload', 'grant_id', 'uid', 'user_code', 'account_id', 'expires_at']);
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
