import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

/**
 * What one complete sign-in costs the database (GET /auth, the login page, POST the form, the
 * resumed authorization, POST /token), counted from Knex's own query events: a count, not a time,
 * so it is the same on every machine. The argon2 hash should be the only thing a sign-in pays for
 * dearly; a step that reads or writes a row twice shows up here first.
 */
describe('the database work of one sign-in', () => {
  let ts: TestServer;
  before(async () => {
    // The mail and webhook workers' polling would land in the count.
    ts = await startTestServer({ MAIL_POLL_INTERVAL_MS: '60000', WEBHOOK_POLL_INTERVAL_MS: '60000' });
  });
  after(() => stopAndDestroy(ts));

  it('is at most 11 statements, reading the interaction once per step, writing once per provider step', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    // The first sign-in fills the per-instance caches (client, keys); the second is the steady state.
    await signIn(ts, config, user, { scope: 'openid' });

    const statements: Array<{ sql: string; bindings: readonly unknown[] }> = [];
    const onQuery = (q: { sql: string; bindings?: readonly unknown[] }) => {
      // The workers' queues, and the enabled webhooks' list (read once per 30 s per instance, not per sign-in).
      if (/"outbox"|"webhook_deliveries"|"webhooks"|^(BEGIN|COMMIT|ROLLBACK);?$/i.test(q.sql)) return;
      statements.push({ sql: q.sql, bindings: q.bindings ?? [] });
    };
    ts.server.services.db.on('query', onQuery);
    try {
      const { tokens, logins } = await signIn(ts, config, user, { scope: 'openid' });
      assert.equal(logins, 1, 'the password was asked for');
      assert.equal(tokens.claims()!.sub, user.id);
    } finally {
      ts.server.services.db.off('query', onQuery);
    }

    // The token path's statements (repos/payload-statements.ts) take arrays of models and ids; a
    // lookup's first array is the models it reads (the later ones, those whose grant, account or
    // session come along).
    const about = (model: string, verb: RegExp) =>
      statements.filter((s) => verb.test(s.sql.trimStart()) && ([s.bindings[0]].flat() as unknown[]).includes(model)).length;
    // GET /interaction/:uid, POST /login and the resumed /auth each read it once (the login step
    // saves its result on the interaction it loaded, without reading it again).
    assert.equal(about('Interaction', /^(select|with wanted)/i), 3, statements.map((s) => s.sql).join('\n'));
    assert.equal(statements.filter((s) => /from "?users"? where .*lower\(email\)/i.test(s.sql.replace(/\s+/g, ' '))).length, 1, 'the account looked up by address once');
    assert.ok(!statements.some((s) => /^select .* from "mfa_factors"/i.test(s.sql.trimStart())), 'its second factors come with it');
    // The code at /token comes with its grant, account and session; the interaction at the
    // resumed authorization with the account its login step proved.
    assert.ok(!statements.some((s) => /and uid = \$2/.test(s.sql)), 'the session is read with the code');
    assert.ok(!statements.some((s) => /from "?users"? where "?id"? =/i.test(s.sql)), 'the account is read with the interaction and the code');
    // The resumed authorization writes once (oidc/held-writes.ts): the interaction's removal, the
    // grant, the code and the session in one statement; the code's redemption at /token is another.
    const heldWrites = statements.filter((s) => /^with consumed as/i.test(s.sql.trimStart()));
    assert.equal(heldWrites.length, 2, statements.map((s) => s.sql).join('\n'));
    assert.ok(!statements.some((s) => /^delete from oidc_payloads/i.test(s.sql.trimStart())), 'the interaction goes with the resumed writes');
    assert.ok(statements.length <= 11, `${statements.length} statements:\n${statements.map((s) => s.sql).join('\n')}`);
  });
});
