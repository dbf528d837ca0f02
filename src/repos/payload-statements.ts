import type { Statement } from '../infra/db.ts';

/**
 * The oidc_payloads statements of the token path, run as named prepared statements (see
 * runStatement in infra/db.ts). Batches pass arrays (unnest) or one JSON document
 * (jsonb_to_recordset), so each text is fixed whatever the number of rows.
 */

// Rows already past expiry are hidden by every read; the provider checks `exp` itself as well.
export const notExpired = (alias: string) => `(${alias}.expires_at is null or ${alias}.expires_at > now())`;

// Account ids are UUIDs; anything else (a client_credentials subject, a test's "acc-1") has no user.
const UUID_TEXT = `'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'`;

/**
 * Many (model, id) lookups in one statement. For the models in $3 the row's grant comes along, for
 * those in $4 its account too, and for those in $5 the session its payload names (sessionUid): the
 * reads a redemption, a refresh or an introspection makes next.
 */
export const findMany: Statement = {
  name: 'oidc_payloads_find_many_v2',
  text: `
    with wanted as (select * from unnest($1::text[], $2::text[]) as w(model, id)),
    hit as (
      select p.model, p.id, p.payload, p.consumed_at, p.grant_id, p.account_id
      from oidc_payloads p join wanted w on p.model = w.model and p.id = w.id
      where ${notExpired('p')}
    )
    select h.model, h.id, h.payload, h.consumed_at, h.grant_id,
      g.payload as grant_payload, g.consumed_at as grant_consumed_at,
      case when u.id is not null then to_jsonb(u) end as account,
      s.uid as session_uid, s.payload as session_payload, s.consumed_at as session_consumed_at
    from hit h
    left join oidc_payloads g
      on h.model = any($3::text[]) and g.model = 'Grant' and g.id = h.grant_id and ${notExpired('g')}
    left join users u
      on h.model = any($4::text[])
      and u.id = (case when h.account_id ~ ${UUID_TEXT} then h.account_id::uuid end)
    left join oidc_payloads s
      on h.model = any($5::text[]) and s.model = 'Session' and s.uid = h.payload->>'sessionUid' and ${notExpired('s')}`,
};

/**
 * The writes of one batch in one statement: $1 a JSON array of rows to upsert (never touching
 * consumed_at), $2/$3 the (model, id) of rows to consume. Answers the rows this statement
 * consumed; a row consumed before (or by a concurrent statement, which it waits for) is not among
 * them. Both parts always run; no key is in both (payload-write-batcher.ts).
 */
export const writeMany: Statement = {
  name: 'oidc_payloads_write_many_v1',
  text: `
    with upserted as (
      insert into oidc_payloads (model, id, payload, grant_id, uid, user_code, account_id, expires_at)
      select model, id, payload, grant_id, uid, user_code, account_id, expires_at
      from jsonb_to_recordset($1::jsonb)
        as r(model text, id text, payload jsonb, grant_id text, uid text, user_code text, account_id text, expires_at timestamptz)
      on conflict (model, id) do update set
        payload = excluded.payload, grant_id = excluded.grant_id, uid = excluded.uid,
        user_code = excluded.user_code, account_id = excluded.account_id, expires_at = excluded.expires_at
    )
    update oidc_payloads p set consumed_at = now()
    from unnest($2::text[], $3::text[]) as c(model, id)
    where p.model = c.model and p.id = c.id and p.consumed_at is null
    returning p.model, p.id`,
};

/**
 * The writes a request held (oidc/held-writes.ts) in one statement: $4/$5 the rows to delete, $1 a
 * JSON array of rows to upsert (a session's with its device: `touched` sets its last use), and $2/$3
 * an optional code or refresh token to consume. With a consume, the rest is written only if this
 * statement is the one that marked it (not when it was consumed before, or by a concurrent
 * statement, which it waits for). Answers `ok` false when the consume lost. No key is in two parts.
 */
export const writeHeld: Statement = {
  name: 'oidc_payloads_write_held_v1',
  text: `
    with consumed as (
      update oidc_payloads p set consumed_at = now()
      where $2::text is not null and p.model = $2 and p.id = $3 and p.consumed_at is null
      returning 1
    ),
    go as (select ($2::text is null or exists (select 1 from consumed)) as ok),
    gone as (
      delete from oidc_payloads p using unnest($4::text[], $5::text[]) as d(model, id)
      where p.model = d.model and p.id = d.id and (select ok from go)
      returning 1
    ),
    written as (
      insert into oidc_payloads (model, id, payload, grant_id, uid, user_code, account_id, expires_at, user_agent, ip_address, last_used_at)
      select model, id, payload, grant_id, uid, user_code, account_id, expires_at, user_agent, ip_address, case when touched then now() end
      from jsonb_to_recordset($1::jsonb) as r(model text, id text, payload jsonb, grant_id text, uid text, user_code text,
        account_id text, expires_at timestamptz, user_agent text, ip_address text, touched boolean)
      where (select ok from go)
      on conflict (model, id) do update set
        payload = excluded.payload, grant_id = excluded.grant_id, uid = excluded.uid,
        user_code = excluded.user_code, account_id = excluded.account_id, expires_at = excluded.expires_at,
        user_agent = case when excluded.last_used_at is null then oidc_payloads.user_agent else excluded.user_agent end,
        ip_address = case when excluded.last_used_at is null then oidc_payloads.ip_address else excluded.ip_address end,
        last_used_at = coalesce(excluded.last_used_at, oidc_payloads.last_used_at)
      returning 1
    )
    select (select ok from go) as ok, (select count(*) from gone)::int as deleted, (select count(*) from written)::int as written`,
};

/** A session's upsert, which also records the device and time of its use. */
export const upsertSession: Statement = {
  name: 'oidc_payloads_upsert_session_v1',
  text: `
    insert into oidc_payloads (model, id, payload, grant_id, uid, user_code, account_id, expires_at, user_agent, ip_address, last_used_at)
    values ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, now())
    on conflict (model, id) do update set
      payload = excluded.payload, grant_id = excluded.grant_id, uid = excluded.uid,
      user_code = excluded.user_code, account_id = excluded.account_id, expires_at = excluded.expires_at,
      user_agent = excluded.user_agent, ip_address = excluded.ip_address, last_used_at = excluded.last_used_at`,
};

export const findByUid: Statement = {
  name: 'oidc_payloads_find_by_uid_v1',
  text: `select payload, consumed_at from oidc_payloads p where model = $1 and uid = $2 and ${notExpired('p')} limit 1`,
};

export const findByUserCode: Statement = {
  name: 'oidc_payloads_find_by_user_code_v1',
  text: `select payload, consumed_at from oidc_payloads p where model = $1 and user_code = $2 and ${notExpired('p')} limit 1`,
};

export const destroy: Statement = {
  name: 'oidc_payloads_destroy_v1',
  text: 'delete from oidc_payloads where model = $1 and id = $2',
};

export const grantIdOf: Statement = {
  name: 'oidc_payloads_grant_id_of_v1',
  text: 'select grant_id from oidc_payloads where model = $1 and id = $2',
};

/** One batch ($2 rows at most) of a grant's rows; repeated until fewer come back. */
export const revokeByGrantId: Statement = {
  name: 'oidc_payloads_revoke_grant_v1',
  text: `delete from oidc_payloads where (model, id) in (select model, id from oidc_payloads where grant_id = $1 limit $2)`,
};

export const revokeModelByGrantId: Statement = {
  name: 'oidc_payloads_revoke_grant_model_v1',
  text: `delete from oidc_payloads where (model, id) in (select model, id from oidc_payloads where grant_id = $1 and model = $3 limit $2)`,
};
