/**
 * Fills oidc_payloads with realistic rows, server-side (INSERT ... SELECT over generate_series), for
 * the bench's scale mode (`npm run bench -- --store=postgres --scale=10000000`, see bench/README.md).
 *
 * Rows come in families of ten, shaped like what the provider writes through src/oidc/adapter.ts:
 * one Grant, one Session (uid, device columns), one consumed AuthorizationCode, two RefreshTokens
 * (the rotated one consumed), three AccessTokens and two ClientCredentials tokens of other clients.
 * Bearer models (DIGESTED_MODELS) are keyed by a 43-character base64url digest and stored without
 * `jti`, as the adapter stores them; Grant and Session keep their id in the payload. grant_id and
 * account_id are filled as on real rows.
 *
 * Expiry: `expiredPercent` of the families are past every expiry (issued 14 to 21 days ago: the
 * backlog a stopped sweeper leaves); the others were created within the last 13 days, with their
 * access and client_credentials tokens (1 h lifetime) expiring evenly over the coming hour, so at 10 M
 * rows about 1,100 rows a second cross their expiry, and their codes (60 s) long expired.
 *
 * Standalone: DATABASE_URL=postgres://... node bench/seed-scale.ts --rows=10000000 [--expired=10]
 * (the schema must exist: start the server once, or run bench/seed.ts, on that database first).
 */
import { parseArgs } from 'node:util';
import pg from 'pg';

export const ROWS_PER_FAMILY = 10;
/** Families per INSERT: 200,000 rows a statement keeps each one short and the progress visible. */
const FAMILIES_PER_BATCH = 20_000;
const ACCOUNTS = 100_000;
const CLIENTS = 50;

export interface ScaleSeedOptions {
  /** First family index (families are numbered; growing a table continues where the last call stopped). */
  fromFamily: number;
  families: number;
  expiredPercent: number;
  /** Distinguishes the ids of one run from another's. */
  tag: string;
  onProgress?: (rowsDone: number, rowsTotal: number) => void;
}

/** base64url (no padding) of sha256(text): the length and alphabet of a keyed token digest or a nanoid. */
const b64 = (text: string) => `rtrim(translate(encode(sha256(convert_to(${text}, 'UTF8')), 'base64'), '+/', '-_'), '=')`;

/** One INSERT ... SELECT for families [$1, $2). $3 = expired percent, $4 = tag. */
export const FAMILY_INSERT_SQL = `
with fam as (
  select i,
    ${b64(`$4 || ':g:' || i`)} as grant_id,
    ${b64(`$4 || ':s:' || i`)} as session_id,
    ${b64(`$4 || ':u:' || i`)} as session_uid,
    ${b64(`$4 || ':sid:' || i`)} as sid,
    md5($4 || ':a:' || (i % ${ACCOUNTS}))::uuid::text as account_id,
    left(${b64(`$4 || ':c:' || (i % ${CLIENTS})`)}, 22) as client_id,
    left(${b64(`$4 || ':cc:' || ((i + 7) % ${CLIENTS})`)}, 22) as cc_client_id,
    (i % 100) < $3::int as expired,
    -- two reproducible fractions in [0, 1) per family
    ('x' || substr(md5($4 || ':r:' || i), 1, 8))::bit(32)::bigint / 4294967296.0 as r1,
    ('x' || substr(md5($4 || ':r:' || i), 9, 8))::bit(32)::bigint / 4294967296.0 as r2
  from generate_series($1::bigint, $2::bigint - 1) as i
), t as (
  select fam.*,
    -- when the grant (and session, code, first refresh token) was issued
    case when expired then now() - interval '14 days' - r1 * interval '7 days'
         else now() - r1 * interval '13 days' end as created,
    -- when the newest access tokens were issued: within the last hour, or long ago for expired families
    case when expired then now() - interval '14 days' - r1 * interval '7 days' + interval '1 minute'
         else now() - r2 * interval '1 hour' end as at_created
  from fam
), e as (
  select t.*, extract(epoch from created)::bigint as iat, extract(epoch from at_created)::bigint as at_iat from t
)
insert into oidc_payloads
  (model, id, payload, grant_id, uid, account_id, expires_at, consumed_at, created_at, user_agent, ip_address, last_used_at)
select r.* from e cross join lateral (values
  ('Grant', grant_id,
    jsonb_build_object('exp', iat + 1209600, 'iat', iat, 'jti', grant_id, 'kind', 'Grant',
      'openid', jsonb_build_object('scope', 'openid offline_access'), 'clientId', client_id, 'accountId', account_id),
    null::text, null::text, account_id, created + interval '14 days', null::timestamptz, created, null::text, null::text, null::timestamptz),
  ('Session', session_id,
    jsonb_build_object('acr', 'pwd', 'amr', jsonb_build_array('pwd'), 'exp', iat + 1209600, 'iat', iat, 'jti', session_id,
      'uid', session_uid, 'kind', 'Session', 'loginTs', iat, 'accountId', account_id,
      'authorizations', jsonb_build_object(client_id, jsonb_build_object('sid', sid, 'grantId', grant_id, 'persistsLogout', true))),
    null, session_uid, account_id, created + interval '14 days', null, created, 'Mozilla/5.0 (X11; Linux x86_64) bench', '203.0.113.' || (i % 250), at_created),
  ('AuthorizationCode', ${b64(`$4 || ':code:' || i`)},
    jsonb_build_object('acr', 'pwd', 'amr', jsonb_build_array('pwd'), 'exp', iat + 60, 'iat', iat, 'kind', 'AuthorizationCode',
      'scope', 'openid offline_access', 'grantId', grant_id, 'authTime', iat, 'clientId', client_id, 'accountId', account_id,
      'sessionUid', session_uid, 'redirectUri', 'https://app.example.test/cb',
      'codeChallenge', ${b64(`$4 || ':pkce:' || i`)}, 'codeChallengeMethod', 'S256'),
    grant_id, null, account_id, created + interval '60 seconds', created + interval '1 second', created, null, null, null),
  ('RefreshToken', ${b64(`$4 || ':rt0:' || i`)},
    jsonb_build_object('acr', 'pwd', 'amr', jsonb_build_array('pwd'), 'exp', iat + 1209600, 'gty', 'authorization_code', 'iat', iat,
      'iiat', iat, 'kind', 'RefreshToken', 'scope', 'openid offline_access', 'grantId', grant_id, 'authTime', iat,
      'clientId', client_id, 'accountId', account_id, 'rotations', 0, 'sessionUid', session_uid),
    grant_id, null, account_id, created + interval '14 days', at_created, created, null, null, null),
  ('RefreshToken', ${b64(`$4 || ':rt1:' || i`)},
    jsonb_build_object('acr', 'pwd', 'amr', jsonb_build_array('pwd'), 'exp', iat + 1209600, 'gty', 'authorization_code refresh_token',
      'iat', at_iat, 'iiat', iat, 'kind', 'RefreshToken', 'scope', 'openid offline_access', 'grantId', grant_id, 'authTime', iat,
      'clientId', client_id, 'accountId', account_id, 'rotations', 1, 'sessionUid', session_uid),
    grant_id, null, account_id, created + interval '14 days', null, at_created, null, null, null)
) as r(model, id, payload, grant_id, uid, account_id, expires_at, consumed_at, created_at, user_agent, ip_address, last_used_at)
union all
select r.* from e cross join lateral (values
  (0, 'authorization_code'), (1, 'authorization_code refresh_token'), (2, 'authorization_code refresh_token')
) as k(n, gty) cross join lateral (values
  ('AccessToken', ${b64(`$4 || ':at' || k.n || ':' || i`)},
    jsonb_build_object('exp', at_iat + 3600, 'gty', k.gty, 'iat', at_iat, 'kind', 'AccessToken', 'scope', 'openid offline_access',
      'grantId', grant_id, 'clientId', client_id, 'accountId', account_id, 'sessionUid', session_uid),
    grant_id, null::text, account_id, at_created + interval '1 hour', null::timestamptz, at_created, null::text, null::text, null::timestamptz)
) as r(model, id, payload, grant_id, uid, account_id, expires_at, consumed_at, created_at, user_agent, ip_address, last_used_at)
union all
select r.* from e cross join lateral (values (0), (1)) as k(n) cross join lateral (values
  ('ClientCredentials', ${b64(`$4 || ':cc' || k.n || ':' || i`)},
    jsonb_build_object('exp', at_iat + 3600 - k.n * 600, 'iat', at_iat - k.n * 600, 'kind', 'ClientCredentials', 'scope', 'read', 'clientId', cc_client_id),
    null::text, null::text, null::text, at_created + interval '1 hour' - k.n * interval '10 minutes', null::timestamptz,
    at_created - k.n * interval '10 minutes', null::text, null::text, null::timestamptz)
) as r(model, id, payload, grant_id, uid, account_id, expires_at, consumed_at, created_at, user_agent, ip_address, last_used_at)
`;

/** Inserts `families` families (ten rows each) in batches; returns the rows inserted. */
export async function seedFamilies(client: pg.ClientBase, o: ScaleSeedOptions): Promise<number> {
  const total = o.families * ROWS_PER_FAMILY;
  // Bench data only: a lost commit on a crash costs nothing, and not waiting for the WAL flush saves time.
  await client.query('set synchronous_commit = off');
  let done = 0;
  for (let lo = o.fromFamily; lo < o.fromFamily + o.families; lo += FAMILIES_PER_BATCH) {
    const hi = Math.min(lo + FAMILIES_PER_BATCH, o.fromFamily + o.families);
    const res = await client.query(FAMILY_INSERT_SQL, [lo, hi, o.expiredPercent, o.tag]);
    done += res.rowCount ?? 0;
    o.onProgress?.(done, total);
  }
  return done;
}

/** Families needed to bring a table of `existingRows` rows to about `targetRows` (never negative). */
export function familiesFor(targetRows: number, existingRows: number): number {
  return Math.max(0, Math.ceil((targetRows - existingRows) / ROWS_PER_FAMILY));
}

async function main() {
  const { values } = parseArgs({ options: { rows: { type: 'string' }, expired: { type: 'string' }, tag: { type: 'string' } } });
  const rows = Number(values.rows ?? 10_000_000);
  const expiredPercent = Number(values.expired ?? 10);
  if (!Number.isFinite(rows) || rows < 0 || !Number.isInteger(expiredPercent) || expiredPercent < 0 || expiredPercent > 100) {
    throw new Error('--rows must be ≥ 0 and --expired a whole percentage');
  }
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    const { rows: [row] } = await client.query<{ n: string }>('select count(*) as n from oidc_payloads');
    const existing = Number(row!.n);
    const t0 = performance.now();
    const inserted = await seedFamilies(client, {
      fromFamily: existing, // families are numbered past anything a previous call could have used
      families: familiesFor(rows, existing),
      expiredPercent,
      tag: values.tag ?? 'scale',
      onProgress: (d, t) => process.stderr.write(`\r${d} / ${t} rows`),
    });
    await client.query('analyze oidc_payloads');
    process.stderr.write(`\n${inserted} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s (analyzed)\n`);
  } finally {
    await client.end();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`seed-scale failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
