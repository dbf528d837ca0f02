import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AdminApi, ADMIN_CLIENT_ID, adminToken, startAdminServer } from '../helpers/admin.ts';
import { waitFor } from '../helpers/mailbox.ts';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { registerClient, rpConfig, signIn, submitLogin, uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import * as oidc from 'openid-client';

describe('domain events', () => {
  let ts: TestServer;
  let api: AdminApi;
  before(async () => {
    ts = await startAdminServer({ LOCKOUT_THRESHOLD: '3' });
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  const eventsOf = async (subjectId: string) =>
    (await ts.server.services.db('events').where({ subject_id: subjectId }).orderBy('occurred_at')).map((e) => ({
      ...e,
      payload: typeof e.payload === 'string' ? JSON.parse(e.payload) : e.payload,
    }));

  it('records user.created (with the acting admin client), updates, suspension and deletion', async () => {
    const created = await api.post('/users', { email: uniqueEmail('ev'), password: 'a fine password 1', givenName: 'Eve' });
    assert.equal(created.status, 201, created.text);
    const id = created.body.id as string;
    assert.equal((await api.patch(`/users/${id}`, { familyName: 'Moneypenny', password: 'another password 2' })).status, 200);
    assert.equal((await api.post(`/users/${id}/suspend`)).status, 200);
    assert.equal((await api.delete(`/users/${id}`)).status, 200);

    const events = await eventsOf(id);
    assert.deepEqual(events.map((e) => e.type), ['user.created', 'user.updated', 'user.password_changed', 'user.suspended', 'user.deleted']);
    for (const e of events) {
      assert.deepEqual({ type: e.actor_type, id: e.actor_id }, { type: 'client', id: ADMIN_CLIENT_ID });
      assert.ok(e.request_id, 'the request id is kept for the audit trail');
    }
    assert.equal(events[0]!.payload.user.email, created.body.email);
    assert.equal(events[0]!.payload.user.firstName, 'Eve');
    assert.deepEqual(events[1]!.payload.changed.sort(), ['familyName', 'password']);
    assert.deepEqual(events[3]!.payload.changes.status, { from: 'active', to: 'suspended' });
    const serialised = JSON.stringify(events);
    assert.doesNotMatch(serialised, /argon2|a fine password|another password/);
  });

  it('records sign-ins, failures and the lock, bound to the relying party and the request', async () => {
    const email = uniqueEmail('ev');
    const created = await api.post('/users', { email, password: 'right password 1', emailVerified: true });
    const id = created.body.id as string;
    const client = await registerClient(ts, {}, true);
    const config = await rpConfig(ts, client);
    await signIn(ts, config, { email, password: 'right password 1' });

    for (let i = 0; i < 3; i++) {
      const browser = new HttpBrowser();
      const page = await browser.follow(
        oidc.buildAuthorizationUrl(config, {
          redirect_uri: 'http://127.0.0.1:9/cb', scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256',
        }),
      );
      const res = await submitLogin(browser, page.url, await page.res.text(), email, 'wrong password');
      assert.ok(res.status === 401 || res.status === 429);
    }
    // A failure's events are written after its answer (so they cost no time an unknown address does not).
    const events = await waitFor('the failure events', async () => {
      const rows = await eventsOf(id);
      return rows.length >= 6 ? rows : undefined;
    });
    const types = events.map((e) => e.type);
    assert.deepEqual(types, ['user.created', 'user.signed_in', 'user.sign_in_failed', 'user.sign_in_failed', 'user.sign_in_failed', 'user.locked']);
    const signedIn = events[1]!;
    assert.deepEqual({ type: signedIn.actor_type, id: signedIn.actor_id }, { type: 'user', id }, 'the user signs in');
    assert.equal(signedIn.payload.clientId, client.clientId, 'at the relying party');
    assert.ok(signedIn.request_id);
    assert.deepEqual(signedIn.payload.amr, ['pwd']);
    assert.equal(events[4]!.payload.failedAttempts, 3);
    assert.ok(Date.parse(events[5]!.payload.lockedUntil) > Date.now());
    assert.doesNotMatch(JSON.stringify(events), /wrong password|right password|argon2/);
  });
});
