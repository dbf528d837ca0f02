import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { AdminApi, ADMIN_CLIENT_ID, adminToken, startAdminServer } from '../helpers/admin.ts';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { waitFor } from '../helpers/mailbox.ts';
import { POST_LOGOUT_URI, REDIRECT_URI, rpConfig, signIn, submitLogin, uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import type { EventRow } from '../../src/repos/events.ts';

/**
 * The event catalogue (README "Events") through the real interfaces: every change made over HTTP
 * records its event with who acted, on what, in which tenant, from which request, address and user
 * agent; and no payload carries a password, secret or token that went over the wire.
 */

/** An events row as the tests read it (payload indexed freely). */
type StoredEvent = Omit<EventRow, 'payload'> & { payload: Record<string, any> };

const ADMIN_UA = 'CatalogueAdmin/1.0';
const USER_UA = 'CatalogueBrowser/2.0';
const LOOPBACK = /^(::ffff:)?127\.0\.0\.1$|^::1$/;

describe('event catalogue', () => {
  let ts: TestServer;
  let api: AdminApi;
  before(async () => {
    ts = await startAdminServer({ LOCKOUT_THRESHOLD: '3', ME_API_RATE_LIMIT_PER_USER: '1000' });
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  /** Events about one target, in the order they were recorded. */
  const eventsOn = async (targetType: string, targetId: string): Promise<StoredEvent[]> =>
    (await ts.server.services.db('events').where({ target_type: targetType, target_id: targetId }).orderBy('seq')).map((e) => ({
      ...e,
      payload: typeof e.payload === 'string' ? JSON.parse(e.payload) : e.payload,
    }));

  /** An admin call with its own request id and user agent, so each event can be traced to it. */
  let calls = 0;
  async function admin(method: 'get' | 'post' | 'patch' | 'delete', path: string, body?: unknown) {
    const requestId = `cat-admin-${++calls}`;
    const headers = { 'x-request-id': requestId, 'user-agent': ADMIN_UA };
    const res = method === 'get' || method === 'delete'
      ? await api[method](path, { headers, ...(body !== undefined ? { json: body } : {}) })
      : method === 'post' ? await api.post(path, body, { headers }) : await api.patch(path, body, { headers });
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${res.text}`);
    return { ...res, requestId };
  }

  /** A browser whose every request names its user agent and a request id of the `ui-` series. */
  function browserOf(seen: string[]) {
    const browser = new HttpBrowser();
    const request = browser.request.bind(browser);
    browser.request = (url, init = {}) => {
      const requestId = `cat-ui-${seen.length + 1}`;
      seen.push(requestId);
      return request(url, { ...init, headers: { ...Object.fromEntries(new Headers(init.headers)), 'user-agent': USER_UA, 'x-request-id': requestId } });
    };
    return browser;
  }

  function assertFromRequest(e: StoredEvent, requestId: string | string[], userAgent: string) {
    const ids = Array.isArray(requestId) ? requestId : [requestId];
    assert.ok(e.request_id && ids.includes(e.request_id), `${e.type}: request id ${e.request_id} is one of the request's`);
    assert.equal(e.user_agent, userAgent, `${e.type}: user agent`);
    assert.match(e.ip ?? '', LOOPBACK, `${e.type}: address`);
    assert.equal(e.tenant_id, 'default', `${e.type}: tenant`);
  }

  function assertNoSecret(events: StoredEvent[], secrets: string[]) {
    const text = JSON.stringify(events);
    for (const secret of secrets) assert.ok(!text.includes(secret), `no event carries ${secret.slice(0, 6)}…`);
    assert.doesNotMatch(text, /argon2|secret_digest|secret_sealed|access_token|refresh_token|id_token/);
  }

  it('a user life cycle: created, updated, suspended, reactivated, signed in, failed, locked, unlocked, password changed, signed out, deleted', async () => {
    const client = await admin('post', '/clients', {
      client_name: 'Catalogue RP', redirect_uris: [REDIRECT_URI], post_logout_redirect_uris: [POST_LOGOUT_URI],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], scope: 'openid email profile offline_access', first_party: true,
    });
    const rp = { clientId: client.body.client_id as string, clientSecret: client.body.client_secret as string };
    const email = uniqueEmail('catalogue');
    const password = 'first catalogue passphrase 71';
    const newPassword = 'second catalogue passphrase 83';

    const created = await admin('post', '/users', { email, password, emailVerified: true, givenName: 'Cata' });
    const userId = created.body.id as string;
    const updated = await admin('patch', `/users/${userId}`, { familyName: 'Logue' });
    const suspended = await admin('post', `/users/${userId}/suspend`);
    const reactivated = await admin('post', `/users/${userId}/reactivate`);

    const ui: string[] = [];
    const browser = browserOf(ui);
    const config = await rpConfig(ts, rp);
    const { tokens } = await signIn(ts, config, { email, password }, { browser, prompt: 'consent', scope: 'openid email profile offline_access' });
    const signInRequests = [...ui];

    // Wrong passwords up to the threshold lock the account; their events are written after the answer.
    const failing: string[] = [];
    for (let i = 0; i < 3; i++) {
      const other = browserOf(failing);
      const page = await other.follow(oidc.buildAuthorizationUrl(config, {
        redirect_uri: REDIRECT_URI, scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256',
      }));
      const res = await submitLogin(other, page.url, await page.res.text(), email, `wrong catalogue password ${i}`);
      assert.ok(res.status === 401 || res.status === 429, `a wrong password is refused (${res.status})`);
    }
    await waitFor('the lock', async () => ((await eventsOn('user', userId)).some((e) => e.type === 'user.locked') ? true : undefined));
    const unlocked = await admin('post', `/users/${userId}/unlock`);

    const changed = await callUserApiAs('POST', '/api/v1/me/password', tokens.access_token, { currentPassword: password, newPassword }, 'cat-me-password');
    assert.equal(changed.status, 204);

    // RP-initiated logout with the ID token as hint: the user confirms and the session ends.
    const logoutPage = await browser.request(oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI }));
    const html = await logoutPage.text();
    const confirm = await browser.postForm(new URL(formAction(html, '/session/end')!, ts.issuer), { xsrf: formField(html, 'xsrf')!, logout: 'yes' });
    assert.equal(confirm.status, 303);
    const logoutRequest = ui.at(-1)!;
    await waitFor('the sign-out', async () => ((await eventsOn('user', userId)).some((e) => e.type === 'user.signed_out') ? true : undefined));

    const deleted = await admin('delete', `/users/${userId}`);

    const events = await eventsOn('user', userId);
    assert.deepEqual(events.map((e) => e.type), [
      'user.created', 'user.updated', 'user.suspended', 'user.reactivated',
      'user.signed_in',
      'user.sign_in_failed', 'user.sign_in_failed', 'user.sign_in_failed', 'user.locked',
      'user.unlocked', 'user.password_changed', 'user.signed_out', 'user.deleted',
    ]);
    const byType = (type: string, nth = 0) => events.filter((e) => e.type === type)[nth]!;
    const asAdmin = { type: 'client', id: ADMIN_CLIENT_ID };
    const asUser = { type: 'user', id: userId };
    const actorOf = (e: StoredEvent) => ({ type: e.actor_type, id: e.actor_id });
    for (const e of events) assert.deepEqual({ type: e.target_type, id: e.target_id }, { type: 'user', id: userId }, `${e.type}: target`);

    // The operator's changes: the admin client acts, in the request that made them.
    for (const [type, call] of [['user.created', created], ['user.updated', updated], ['user.suspended', suspended], ['user.reactivated', reactivated], ['user.unlocked', unlocked], ['user.deleted', deleted]] as const) {
      assert.deepEqual(actorOf(byType(type)), asAdmin, `${type}: actor`);
      assertFromRequest(byType(type), call.requestId, ADMIN_UA);
    }
    assert.equal(byType('user.created').payload.user.email, email);
    assert.deepEqual(byType('user.updated').payload.changed, ['familyName']);
    assert.deepEqual(byType('user.suspended').payload.changes.status, { from: 'active', to: 'suspended' });
    assert.deepEqual(byType('user.reactivated').payload.changes.status, { from: 'suspended', to: 'active' });
    assert.deepEqual(byType('user.deleted').payload.changes.status, { from: 'active', to: 'deactivated' });
    assert.equal(byType('user.unlocked').payload.before.locked, true);

    // The user's own: the user acts; the relying party is named in the sign-in's payloads.
    const signedIn = byType('user.signed_in');
    assert.deepEqual(actorOf(signedIn), asUser);
    assert.equal(signedIn.payload.clientId, rp.clientId);
    assert.deepEqual(signedIn.payload.amr, ['pwd']);
    assertFromRequest(signedIn, signInRequests, USER_UA);
    for (let i = 0; i < 3; i++) {
      const failed = byType('user.sign_in_failed', i);
      assert.deepEqual(actorOf(failed), asUser);
      assert.equal(failed.payload.reason, 'invalid_credentials');
      assert.equal(failed.payload.clientId, rp.clientId);
      assertFromRequest(failed, failing, USER_UA);
    }
    assert.ok(Date.parse(byType('user.locked').payload.lockedUntil) > Date.now() - 60_000);
    assertFromRequest(byType('user.locked'), failing, USER_UA);
    assert.deepEqual(actorOf(byType('user.password_changed')), asUser);
    assertFromRequest(byType('user.password_changed'), 'cat-me-password', 'CatalogueMe/1.0');
    const signedOut = byType('user.signed_out');
    assert.deepEqual(actorOf(signedOut), asUser);
    assert.equal(signedOut.payload.clientId, rp.clientId);
    assert.equal(signedOut.payload.sessionEnded, true);
    assertFromRequest(signedOut, logoutRequest, USER_UA);

    assertNoSecret(events, [password, newPassword, 'wrong catalogue password', rp.clientSecret, tokens.access_token, tokens.id_token!, tokens.refresh_token!]);
  });

  it("the user's own sessions: one revoked, then every one ended; a verification code sent again", async () => {
    const email = uniqueEmail('sessions');
    const password = 'session catalogue passphrase 29';
    const created = await admin('post', '/users', { email, password, emailVerified: true });
    const userId = created.body.id as string;
    const client = await admin('post', '/clients', {
      client_name: 'Sessions RP', redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'],
      scope: 'openid email', first_party: true,
    });
    const config = await rpConfig(ts, { clientId: client.body.client_id, clientSecret: client.body.client_secret });
    const here = await signIn(ts, config, { email, password }, { browser: browserOf([]), prompt: 'consent', scope: 'openid email' });
    await signIn(ts, config, { email, password }, { browser: browserOf([]), prompt: 'consent', scope: 'openid email' });
    const sessions = await callUserApiAs('GET', '/api/v1/me/sessions', here.tokens.access_token, undefined, 'cat-me-list');
    const other = (sessions.body!.data as Array<{ id: string; current: boolean }>).find((s) => !s.current)!;
    assert.ok(other, 'a second session to revoke');
    assert.equal((await callUserApiAs('DELETE', `/api/v1/me/sessions/${other.id}`, here.tokens.access_token, undefined, 'cat-me-revoke')).status, 204);
    assert.equal((await callUserApiAs('POST', '/api/v1/auth/logout-all', here.tokens.access_token, undefined, 'cat-me-all')).status, 204);

    const events = (await eventsOn('user', userId)).filter((e) => e.type !== 'user.created' && e.type !== 'user.signed_in');
    const revoked = (await eventsOn('session', other.id))[0]!;
    assert.equal(revoked.type, 'user.session_revoked');
    assert.deepEqual({ type: revoked.actor_type, id: revoked.actor_id }, { type: 'user', id: userId });
    assert.equal(revoked.payload.session.uid, other.id);
    assertFromRequest(revoked, 'cat-me-revoke', 'CatalogueMe/1.0');
    assert.deepEqual(events.map((e) => e.type), ['user.signed_out_everywhere']);
    assert.deepEqual({ type: events[0]!.actor_type, id: events[0]!.actor_id }, { type: 'user', id: userId });
    assertFromRequest(events[0]!, 'cat-me-all', 'CatalogueMe/1.0');

    // A verification code sent again to an unverified address: its owner asked (anonymously), never the code in the event.
    const unverified = await admin('post', '/users', { email: uniqueEmail('resend'), password, emailVerified: false });
    const resent = await callUserApiAs('POST', '/api/v1/auth/verify-email/resend', undefined, { email: unverified.body.email }, 'cat-resend');
    assert.ok(resent.status < 300, String(resent.status));
    const event = await waitFor('user.verification_resent', async () =>
      (await eventsOn('user', unverified.body.id)).find((e) => e.type === 'user.verification_resent'));
    assert.deepEqual({ type: event.actor_type, id: event.actor_id }, { type: 'user', id: unverified.body.id });
    assertFromRequest(event, 'cat-resend', 'CatalogueMe/1.0');
    assert.ok(await ts.server.services.db('outbox').where({ recipient: unverified.body.email, template: 'verify-email' }).first(), 'the code was mailed');
    assert.deepEqual(Object.keys(event.payload), ['user'], 'the user only: no code, no link');
    assertNoSecret([event, revoked, ...events], [password, here.tokens.access_token]);
  });

  it('clients, resource servers, identity providers and keys: each change by the admin client, with its target', async () => {
    const identifier = `https://catalogue-${Date.now()}.example.test`;
    const rs = await admin('post', '/resource-servers', { identifier, scopes: ['read', 'write'] });
    const client = await admin('post', '/clients', {
      client_name: 'Catalogue machine', grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic', resource_scopes: { [identifier]: 'read write' },
    });
    const clientId = client.body.client_id as string;
    // Dropping a scope withdraws the client's grant of it: the client changes too, by the same actor.
    const rsUpdated = await admin('patch', `/resource-servers/${rs.body.id}`, { scopes: ['read'] });
    const clientUpdated = await admin('patch', `/clients/${clientId}`, { client_name: 'Catalogue machine 2' });
    const rotated = await admin('post', `/clients/${clientId}/secret`);
    const clientDeleted = await admin('delete', `/clients/${clientId}`);
    const rsDeleted = await admin('delete', `/resource-servers/${rs.body.id}`);
    const upstreamSecret = `upstream-catalogue-secret-${Date.now()}`;
    const idp = await admin('post', '/identity-providers', {
      alias: `cat-${Date.now()}`, type: 'oidc', displayName: 'Catalogue SSO', issuer: 'https://sso.catalogue.example', clientId: 'ours', clientSecret: upstreamSecret,
    });
    const idpUpdated = await admin('patch', `/identity-providers/${idp.body.id}`, { displayName: 'Catalogue SSO 2', clientSecret: `${upstreamSecret}-2` });
    const idpDeleted = await admin('delete', `/identity-providers/${idp.body.id}`);

    const asAdmin = { type: 'client', id: ADMIN_CLIENT_ID };
    const check = async (targetType: string, targetId: string, expected: Array<[string, { requestId: string }]>) => {
      const events = await eventsOn(targetType, targetId);
      assert.deepEqual(events.map((e) => e.type), expected.map(([type]) => type), `${targetType} events`);
      events.forEach((e, i) => {
        assert.deepEqual({ type: e.actor_type, id: e.actor_id }, asAdmin, `${e.type}: actor`);
        assert.equal(e.target_id, targetId);
        assertFromRequest(e, expected[i]![1].requestId, ADMIN_UA);
      });
      return events;
    };
    const rsEvents = await check('resource_server', rs.body.id, [['resource_server.created', rs], ['resource_server.updated', rsUpdated], ['resource_server.deleted', rsDeleted]]);
    assert.deepEqual(rsEvents[1]!.payload.changed, ['scopes']);
    assert.deepEqual(rsEvents[1]!.payload.resourceServer.scopes, ['read']);
    const clientEvents = await check('client', clientId, [
      ['client.created', client], ['client.updated', rsUpdated], ['client.updated', clientUpdated], ['client.secret_rotated', rotated], ['client.deleted', clientDeleted],
    ]);
    assert.equal(clientEvents[0]!.payload.client.name, 'Catalogue machine');
    assert.equal(clientEvents[0]!.payload.secretIssued, true);
    assert.deepEqual(clientEvents[1]!.payload.changed, ['resource_scopes']);
    assert.equal(clientEvents[1]!.payload.reason, 'resource_server_changed');
    assert.equal(clientEvents[1]!.payload.resource, identifier);
    assert.deepEqual(clientEvents[2]!.payload.changed, ['client_name']);
    const idpEvents = await check('identity_provider', idp.body.id, [['identity_provider.created', idp], ['identity_provider.updated', idpUpdated], ['identity_provider.deleted', idpDeleted]]);
    assert.deepEqual(idpEvents[1]!.payload.changed, ['clientSecret', 'displayName']);
    assert.equal(idpEvents[0]!.payload.identityProvider.hasClientSecret, true);
    assertNoSecret([...rsEvents, ...clientEvents, ...idpEvents], [
      client.body.client_secret, rotated.body.client_secret, upstreamSecret, `${upstreamSecret}-2`, api.token,
    ]);

    // A local rotation (the CLI's, with no request): the system acts, on the new signing key.
    await ts.server.services.keys.rotate();
    const [rotation] = await ts.server.services.db('events').where({ type: 'key.rotated' }).orderBy('seq', 'desc').limit(1);
    assert.deepEqual({ type: rotation.actor_type, id: rotation.actor_id }, { type: 'system', id: null });
    assert.equal(rotation.target_type, 'key');
    const payload = typeof rotation.payload === 'string' ? JSON.parse(rotation.payload) : rotation.payload;
    assert.equal(payload.keys[0].kid, rotation.target_id);
    assert.deepEqual(payload.keys.map((k: { use: string }) => k.use), ['sig', 'sig', 'cookie']);
    assert.equal(rotation.request_id, null);
    const stored = await ts.server.services.db('server_keys').whereIn('kid', payload.keys.map((k: { kid: string }) => k.kid)).select('kid');
    assert.equal(stored.length, 3, 'the event names the keys the rotation stored');
    assert.doesNotMatch(JSON.stringify(payload), /"d"|"k"|private|sealed/, 'no key material');
  });

  it('API keys: created, rotated and revoked by the admin client; a change made with a key has the key as actor', async () => {
    const created = await admin('post', '/api-keys', { name: 'Catalogue key', scopes: ['iam.users:create', 'iam.users:read'] });
    const keyId = created.body.id as string;
    const rotated = await admin('post', `/api-keys/${keyId}/rotate`, { overlapSeconds: 60 });
    const headers = { 'x-request-id': 'cat-by-key', 'user-agent': ADMIN_UA };
    const made = await api.post('/users', { email: uniqueEmail('bykey') }, { token: rotated.body.key, headers });
    assert.equal(made.status, 201, made.text);
    const revoked = await admin('delete', `/api-keys/${keyId}`);

    const events = await eventsOn('api_key', keyId);
    assert.deepEqual(events.map((e) => e.type), ['api_key.created', 'api_key.rotated', 'api_key.revoked']);
    events.forEach((e, i) => {
      assert.deepEqual({ type: e.actor_type, id: e.actor_id }, { type: 'client', id: ADMIN_CLIENT_ID }, `${e.type}: actor`);
      assertFromRequest(e, [created, rotated, revoked][i]!.requestId, ADMIN_UA);
      assert.deepEqual(e.payload.apiKey, { id: keyId, name: 'Catalogue key', scopes: ['iam.users:create', 'iam.users:read'], expiresAt: null });
    });
    assert.equal(events[1]!.payload.previousKeyExpiresAt, rotated.body.previousKeyExpiresAt);
    const [byKey] = await eventsOn('user', made.body.id);
    assert.equal(byKey!.type, 'user.created');
    assert.deepEqual({ type: byKey!.actor_type, id: byKey!.actor_id }, { type: 'api_key', id: keyId });
    assertFromRequest(byKey!, 'cat-by-key', ADMIN_UA);
    assertNoSecret([...events, byKey!], [created.body.key, rotated.body.key]);
  });

  it('a merge: user.merged on the winner and user.deleted on the source, by the admin client, from its request', async () => {
    const winner = await admin('post', '/users', { email: uniqueEmail('winner'), emailVerified: true });
    const source = await admin('post', '/users', { email: uniqueEmail('source'), emailVerified: true });
    const merge = await admin('post', `/users/${winner.body.id}/merge`, { sourceUserId: source.body.id });
    const [merged] = (await eventsOn('user', winner.body.id)).filter((e) => e.type === 'user.merged');
    assert.ok(merged, 'user.merged recorded on the winner');
    assertFromRequest(merged, merge.requestId, ADMIN_UA);
    assert.deepEqual({ type: merged.actor_type, id: merged.actor_id }, { type: 'client', id: ADMIN_CLIENT_ID });
    assert.deepEqual(merged.payload.winner, { id: winner.body.id });
    assert.deepEqual(merged.payload.source, { id: source.body.id });
    const [deleted] = (await eventsOn('user', source.body.id)).filter((e) => e.type === 'user.deleted');
    assert.ok(deleted, 'the source is deactivated as DELETE /users/:id does it');
    assertFromRequest(deleted, merge.requestId, ADMIN_UA);
  });

  it('roles, role assignments and service accounts: each change by the admin client, with its target and tenant', async () => {
    const identifier = `https://catalogue-roles-${Date.now()}.example.test`;
    await admin('post', '/resource-servers', { identifier, scopes: ['read'], rbac: true });
    const role = await admin('post', '/roles', { name: `catalogue-${Date.now()}`, permissions: [{ resource: identifier, scope: 'read' }] });
    const roleUpdated = await admin('patch', `/roles/${role.body.id}`, { description: 'Readers' });
    const user = await admin('post', '/users', { email: uniqueEmail('roles') });
    const assigned = await admin('post', `/users/${user.body.id}/roles`, { roleIds: [role.body.id] });
    const sa = await admin('post', '/service-accounts', { name: 'Catalogue robot', roleIds: [role.body.id] });
    const saRoles = await admin('delete', `/service-accounts/${sa.body.id}/roles`, { roleIds: [role.body.id] });
    const rotated = await admin('post', `/service-accounts/${sa.body.id}/rotate`, { overlapSeconds: 60 });
    const saDeleted = await admin('delete', `/service-accounts/${sa.body.id}`);
    const unassigned = await admin('delete', `/users/${user.body.id}/roles`, { roleIds: [role.body.id] });
    const roleDeleted = await admin('delete', `/roles/${role.body.id}`);

    const asAdmin = { type: 'client', id: ADMIN_CLIENT_ID };
    const check = async (targetType: string, targetId: string, expected: Array<[string, { requestId: string }]>) => {
      const events = (await eventsOn(targetType, targetId)).filter((e) => expected.some(([type]) => type === e.type));
      assert.deepEqual(events.map((e) => e.type), expected.map(([type]) => type), `${targetType} events`);
      events.forEach((e, i) => {
        assert.deepEqual({ type: e.actor_type, id: e.actor_id }, asAdmin, `${e.type}: actor`);
        assertFromRequest(e, expected[i]![1].requestId, ADMIN_UA);
      });
      return events;
    };
    const roleEvents = await check('role', role.body.id, [['role.created', role], ['role.updated', roleUpdated], ['role.deleted', roleDeleted]]);
    assert.deepEqual(roleEvents[0]!.payload.role.permissions, [{ resource: identifier, scope: 'read' }]);
    assert.deepEqual(roleEvents[1]!.payload.changed, ['description']);
    const userEvents = await check('user', user.body.id, [['user.roles_changed', assigned], ['user.roles_changed', unassigned]]);
    assert.deepEqual(userEvents[0]!.payload.added, [{ id: role.body.id, name: role.body.name }]);
    assert.deepEqual(userEvents[1]!.payload.roles, []);
    const saEvents = await check('service_account', sa.body.id, [
      ['service_account.created', sa], ['service_account.roles_changed', saRoles], ['service_account.secret_rotated', rotated], ['service_account.deleted', saDeleted],
    ]);
    assert.equal(saEvents[0]!.payload.serviceAccount.clientId, sa.body.clientId);
    assert.equal(saEvents[2]!.payload.overlapSeconds, 60);
    assertNoSecret([...roleEvents, ...userEvents, ...saEvents], [sa.body.clientSecret, rotated.body.clientSecret, api.token]);
  });

  it('a tenant life cycle: created, updated, deleted, each the platform\'s (default tenant) with the admin client as actor', async () => {
    const slug = `cat-${Date.now().toString(36)}`;
    const created = await admin('post', '/tenants', { name: 'Catalogue', slug });
    const updated = await admin('patch', `/tenants/${slug}`, { name: 'Catalogue renamed' });
    const deleted = await admin('delete', `/tenants/${created.body.id}`);
    const events = await eventsOn('tenant', created.body.id);
    assert.deepEqual(events.map((e) => e.type), ['tenant.created', 'tenant.updated', 'tenant.deleted']);
    for (const [e, call] of [[events[0]!, created], [events[1]!, updated], [events[2]!, deleted]] as const) {
      assertFromRequest(e, call.requestId, ADMIN_UA);
      assert.deepEqual({ type: e.actor_type, id: e.actor_id }, { type: 'client', id: ADMIN_CLIENT_ID });
      assert.deepEqual(e.payload.tenant, { id: created.body.id, name: e.type === 'tenant.created' ? 'Catalogue' : 'Catalogue renamed', slug });
    }
    assert.deepEqual(events[1]!.payload.changed, ['name']);
  });

  it("every payload recorded above has its type's schema in the README: its required fields, and no other", async () => {
    const rows = (await ts.server.services.db('events').orderBy('seq')).map((e) => ({
      type: e.type as string,
      payload: (typeof e.payload === 'string' ? JSON.parse(e.payload) : e.payload) as Record<string, unknown>,
    }));
    const schemas = readmeSchemas();
    const seen = new Set<string>();
    for (const { type, payload } of rows) {
      const schema = schemas.of(type);
      assert.ok(schema, `${type} has a schema in the README`);
      seen.add(type);
      for (const field of schema.required) assert.ok(field in payload, `${type}: ${field} is present`);
      for (const field of Object.keys(payload)) assert.ok(field in schema.properties, `${type}: ${field} is in the schema`);
    }
    assert.ok(seen.size >= 25, `most of the catalogue was exercised (${[...seen].join(', ')})`);
  });

  /** The account API with a request id and user agent of the `me` series. */
  function callUserApiAs(method: string, path: string, token: string | undefined, body: unknown, requestId: string) {
    return callUserApiWith(ts, method, path, token, body, { 'x-request-id': requestId, 'user-agent': 'CatalogueMe/1.0' });
  }
});

async function callUserApiWith(ts: TestServer, method: string, path: string, token: string | undefined, body: unknown, headers: Record<string, string>) {
  const res = await fetch(new URL(path, ts.issuer), {
    method,
    headers: {
      ...headers,
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, any>) : undefined };
}


/** The README's payload schemas (the Events section's JSON block), with the shared $defs resolved at the top. */
function readmeSchemas() {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = readme.split('\n## Events\n')[1]!.split('```json\n')[1]!.split('\n```')[0]!;
  const doc = JSON.parse(block) as Record<string, any>;
  const resolve = (schema: any): { required: string[]; properties: Record<string, unknown> } =>
    schema.$ref ? resolve(doc.$defs[schema.$ref.replace('#/$defs/', '')]) : { required: schema.required ?? [], properties: schema.properties ?? {} };
  return { of: (type: string) => (doc[type] && type !== '$defs' ? resolve(doc[type]) : undefined) };
}
