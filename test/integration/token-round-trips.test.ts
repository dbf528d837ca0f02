import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import * as oidc from 'openid-client';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

/**
 * Database round trips per token request, counted at the driver (pg's Client#query, PGlite#query):
 * every statement the server sends while one request is in flight. The hot paths must not grow
 * back; the counts are deterministic (one request at a time), nothing here is timed.
 */
const seen: string[] = [];
let counting = false;

function countStatements(ts: TestServer) {
  // PGlite: the one instance the server's knex client holds (query() for knex, execProtocol() for
  // the prepared statements of infra/pglite-statements.ts).
  const pglite = onPostgres ? undefined : (ts.server.services.db.client as unknown as { pglite: PGlite }).pglite;
  const targets: Array<[object, string]> = pglite
    ? [
        [pglite, 'query'],
        [pglite, 'execProtocol'],
      ]
    : [[pg.Client.prototype, 'query']];
  const restores = targets.map(([target, method]) => {
    const holder = target as Record<string, (...args: unknown[]) => unknown>;
    const original = holder[method]!;
    holder[method] = function (this: unknown, ...args: unknown[]) {
      if (counting) {
        const q = args[0] as string | { text?: string } | Uint8Array;
        seen.push(typeof q === 'string' ? q : q instanceof Uint8Array ? Buffer.from(q).toString('latin1') : (q?.text ?? ''));
      }
      return original.apply(this, args);
    };
    return () => {
      holder[method] = original;
    };
  });
  return () => restores.forEach((restore) => restore());
}

/** The statements `work` sent, with the ones about tokens and accounts counted apart. */
async function statementsOf(work: () => Promise<unknown>) {
  seen.length = 0;
  counting = true;
  try {
    await work();
  } finally {
    counting = false;
  }
  const all = [...seen];
  const tokenPath = all.filter((sql) => /oidc_payloads|"users"|\busers\b/.test(sql));
  if (process.env.SHOW_STATEMENTS) console.log(all.map((s) => `  ${s.replace(/\s+/g, ' ').slice(0, 160)}`).join('\n'));
  return { all: all.length, tokenPath: tokenPath.length };
}

describe(`database round trips per token request (${onPostgres ? 'PostgreSQL' : 'PGlite'})`, () => {
  let ts: TestServer;
  let restore: () => void;
  before(async () => {
    ts = await startTestServer();
    restore = countStatements(ts);
  });
  after(async () => {
    restore?.();
    await stopAndDestroy(ts);
  });

  async function post(path: string, client: { clientId: string; clientSecret?: string }, body: Record<string, string>) {
    const res = await fetch(new URL(path, ts.issuer), {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  it('client_credentials (opaque) and introspection', async () => {
    const client = await registerClient(ts, {
      grant_types: ['client_credentials'],
      redirect_uris: [],
      post_logout_redirect_uris: [],
      response_types: [],
      introspection_allowed: true,
    });
    // Warm: the client registry's cache and the keys are loaded once, and each statement is
    // prepared once per connection, not per request.
    const warm = await post('/token', client, { grant_type: 'client_credentials' });
    await post('/token/introspection', client, { token: warm.body.access_token as string });
    let token = '';
    const issue = await statementsOf(async () => {
      const res = await post('/token', client, { grant_type: 'client_credentials' });
      assert.equal(res.status, 200);
      token = res.body.access_token as string;
    });
    const introspect = await statementsOf(async () => {
      const res = await post('/token/introspection', client, { token });
      assert.equal(res.body.active, true);
    });
    console.log(`client_credentials opaque: ${issue.all} statements (${issue.tokenPath} on tokens/accounts)`);
    console.log(`introspection: ${introspect.all} statements (${introspect.tokenPath} on tokens/accounts)`);
    assert.equal(issue.tokenPath, 1, 'the token is one insert');
    assert.equal(introspect.tokenPath, 1, 'every model the provider tries is looked up in one statement');
  });

  it('refresh with rotation', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });
    const first = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    let next = '';
    const refresh = await statementsOf(async () => {
      const res = await post('/token', client, { grant_type: 'refresh_token', refresh_token: first.refresh_token! });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      next = res.body.refresh_token as string;
    });
    assert.ok(next);
    console.log(`refresh: ${refresh.all} statements (${refresh.tokenPath} on tokens/accounts)`);
    // The token with its grant and account; then the consume with the new refresh and access
    // tokens (oidc/held-writes.ts). The same two on PGlite, where they are prepared statements.
    assert.ok(refresh.tokenPath <= 2, `at most 2 statements per refresh (was 6), ${refresh.tokenPath} sent`);
  });
});
