/**
 * The persisted baseline's store (bench/baseline.ts with BASELINE_DATABASE_URL): the plainest
 * PostgreSQL adapter an oidc-provider deployment could write. One table, one statement per adapter
 * call, each a named prepared statement over a pg pool of our server's default size; no batching,
 * no digests of token values, no breakers, no caches. What it costs the bare provider to persist a
 * token, and to read one, is the floor any persisted provider on this machine starts from.
 */
import pg from 'pg';
import type { Adapter, AdapterPayload } from 'oidc-provider';

const TABLE = 'bench_oidc_payloads';

const statements = {
  upsert: {
    name: 'bench_upsert',
    text:
      `insert into ${TABLE} (model, id, payload, grant_id, uid, user_code, expires_at) values ($1, $2, $3, $4, $5, $6, $7) ` +
      'on conflict (model, id) do update set payload = excluded.payload, grant_id = excluded.grant_id, uid = excluded.uid, ' +
      'user_code = excluded.user_code, expires_at = excluded.expires_at',
  },
  find: { name: 'bench_find', text: `select payload, consumed_at from ${TABLE} where model = $1 and id = $2 and (expires_at is null or expires_at > now())` },
  findByUid: { name: 'bench_find_uid', text: `select payload, consumed_at from ${TABLE} where model = $1 and uid = $2 and (expires_at is null or expires_at > now())` },
  findByUserCode: {
    name: 'bench_find_user_code',
    text: `select payload, consumed_at from ${TABLE} where model = $1 and user_code = $2 and (expires_at is null or expires_at > now())`,
  },
  consume: { name: 'bench_consume', text: `update ${TABLE} set consumed_at = now() where model = $1 and id = $2` },
  destroy: { name: 'bench_destroy', text: `delete from ${TABLE} where model = $1 and id = $2` },
  revokeByGrantId: { name: 'bench_revoke_grant', text: `delete from ${TABLE} where grant_id = $1` },
};

/** Creates the table (idempotent) and answers the adapter class the provider's `adapter` option takes. */
export async function createPgAdapter(connectionString: string, poolSize = 10): Promise<new (model: string) => Adapter> {
  const pool = new pg.Pool({ connectionString, max: poolSize });
  await pool.query(
    `create table if not exists ${TABLE} (model text not null, id text not null, payload jsonb not null, grant_id text, uid text, ` +
      'user_code text, expires_at timestamptz, consumed_at timestamptz, primary key (model, id))',
  );
  await pool.query(`create index if not exists ${TABLE}_grant_id on ${TABLE} (grant_id)`);
  await pool.query(`create index if not exists ${TABLE}_uid on ${TABLE} (model, uid)`);

  const first = async (statement: { name: string; text: string }, values: unknown[]) => {
    const { rows } = await pool.query<{ payload: AdapterPayload; consumed_at: Date | null }>({ ...statement, values });
    const row = rows[0];
    return row ? { ...row.payload, ...(row.consumed_at ? { consumed: true } : {}) } : undefined;
  };

  return class PgAdapter implements Adapter {
    readonly model: string;
    constructor(model: string) {
      this.model = model;
    }
    async upsert(id: string, payload: AdapterPayload, expiresIn: number) {
      const expiresAt = expiresIn ? new Date(Date.now() + expiresIn * 1000) : null;
      await pool.query({
        ...statements.upsert,
        values: [this.model, id, payload, payload.grantId ?? null, payload.uid ?? null, payload.userCode ?? null, expiresAt],
      });
    }
    find(id: string) {
      return first(statements.find, [this.model, id]);
    }
    findByUid(uid: string) {
      return first(statements.findByUid, [this.model, uid]);
    }
    findByUserCode(userCode: string) {
      return first(statements.findByUserCode, [this.model, userCode]);
    }
    async consume(id: string) {
      await pool.query({ ...statements.consume, values: [this.model, id] });
    }
    async destroy(id: string) {
      await pool.query({ ...statements.destroy, values: [this.model, id] });
    }
    async revokeByGrantId(grantId: string) {
      await pool.query({ ...statements.revokeByGrantId, values: [grantId] });
    }
  };
}
