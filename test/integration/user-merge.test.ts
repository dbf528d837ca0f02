import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { AdminApi, ADMIN_CLIENT_ID, adminToken, assertError, marker, startAdminServer } from '../helpers/admin.ts';
import { codeAt, enrolTotp } from '../helpers/mfa.ts';
import { REDIRECT_URI, createUser, registerClient, rejectsWithOAuthError, rpConfig, signIn, uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { federate, registerUpstream, type UpstreamOp } from '../helpers/upstream-op.ts';

/**
 * POST /api/v1/users/:id/merge: two accounts of one person become the one in the path. Everything
 * is checked through the real interfaces: sign-ins with openid-client (password and upstream),
 * refresh tokens, the admin API and the rows the merge moves.
 */
describe('user merge', () => {
  let ts: TestServer;
  let api: AdminApi;
  let upstream: UpstreamOp;
  let rp: oidc.Configuration;
  const alias = 'merge-sso';
  const displayName = 'Merge SSO';
  let providerId: string;
  const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);

  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
    ({ upstream, providerId } = await registerUpstream(ts, api, { alias, displayName }, 'merge-broker'));
    rp = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
  });
  after(async () => {
    await upstream?.stop();
    await stopAndDestroy(ts);
  });

  const db = () => ts.server.services.db;
  const idp = () => ({ alias, displayName, issuer: upstream.issuer });
  const roleId = async (name: string, tenant = 'default') => (await db()('roles').where({ tenant_id: tenant, name }).first()).id as string;
  const rolesOf = async (userId: string) =>
    (await db()('user_roles as ur').join('roles as r', 'r.id', 'ur.role_id').where('ur.user_id', userId).orderBy('r.name').select('r.name')).map((r: { name: string }) => r.name);
  const eventsOf = async (type: string, subjectId: string) => db()('events').where({ type, subject_id: subjectId }).orderBy('seq');

  /** An account made by a first upstream sign-in (JIT), linked to `sub`; answers its id. */
  async function federatedUser(): Promise<{ id: string; sub: string }> {
    const sub = marker('up');
    upstream.accounts.set(sub, { email: uniqueEmail('fed').replace(/@.*/, '@acme.test'), email_verified: true, given_name: 'Fed', family_name: 'Erated' });
    const { step, request } = await federate(rp, idp(), sub);
    assert.ok(isCallback(step.url), `expected the RP's callback, got ${step.url.href}`);
    return { id: (await request.redeem(step.url)).claims()!.sub, sub };
  }

  it("the winner keeps its sub; the source's upstream account signs in as the winner; the source is deactivated and its tokens revoked", async () => {
    const winner = await createUser(ts);
    const source = await federatedUser();
    assert.notEqual(source.id, winner.id);
    // The source also has a refresh token of its own, through a password set by an operator (and an
    // address outside the provider's domain, which the login page would send to the provider).
    const password = 'source passphrase for merging 42';
    const sourceEmail = uniqueEmail('source');
    assert.equal((await api.patch(`/users/${source.id}`, { password, email: sourceEmail, emailVerified: true })).status, 200);
    const offline = await rpConfig(ts, await registerClient(ts, {}, true));
    const { tokens: sourceTokens } = await signIn(ts, offline, { email: sourceEmail, password }, { scope: 'openid offline_access', prompt: 'consent' });
    assert.ok(sourceTokens.refresh_token);
    assert.ok((await ts.server.services.repos.payloads.listSessions(source.id)).length > 0);

    const res = await api.post(`/users/${winner.id}/merge`, { sourceUserId: source.id });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.id, winner.id);
    assert.equal(res.body.email, winner.email, 'the winner keeps its email');
    assert.equal(res.body.status, 'active');
    assert.ok(res.body.mfa, 'answered as GET /users/:id shows it');

    // The link moved: the admin API and the table say so.
    const links = await db()('federated_identities').where({ provider_id: providerId, subject: source.sub });
    assert.deepEqual(links.map((l: { user_id: string }) => l.user_id), [winner.id]);
    // The source: deactivated, signed out, its refresh token dead.
    assert.equal((await api.get(`/users/${source.id}`)).body.status, 'deactivated');
    assert.deepEqual(await ts.server.services.repos.payloads.listSessions(source.id), []);
    await rejectsWithOAuthError(oidc.refreshTokenGrant(offline, sourceTokens.refresh_token!), 'invalid_grant');

    // The winner signs in with its password and gets its own sub ...
    const { tokens } = await signIn(ts, rp, winner);
    assert.equal(tokens.claims()!.sub, winner.id);
    // ... and the source's upstream account now signs in as the winner.
    const again = await federate(rp, idp(), source.sub);
    assert.ok(isCallback(again.step.url), again.step.url.href);
    assert.equal((await again.request.redeem(again.step.url)).claims()!.sub, winner.id, 'the upstream subject now signs in as the winner');

    // Events: user.merged on the winner by the admin client, user.deleted on the source.
    const [merged] = await eventsOf('user.merged', winner.id);
    assert.ok(merged);
    assert.equal(merged.actor_type, 'client');
    assert.equal(merged.actor_id, ADMIN_CLIENT_ID);
    assert.equal(merged.target_type, 'user');
    assert.equal(merged.target_id, winner.id);
    const payload = typeof merged.payload === 'string' ? JSON.parse(merged.payload) : merged.payload;
    assert.deepEqual(payload, {
      winner: { id: winner.id }, source: { id: source.id }, moved: { identities: 1, factors: 0, roles: 0 }, dropped: { identities: 0, factors: 0 },
    });
    const [deleted] = await eventsOf('user.deleted', source.id);
    assert.equal(deleted.payload.changes.status.to, 'deactivated');
  });

  it("factors and roles move to the winner; conflicting and unmovable ones stay the winner's", async () => {
    const winner = await createUser(ts);
    const source = await createUser(ts);
    const sourceSecret = await enrolTotp(ts, source.id);
    await ts.server.services.mfa.regenerateRecoveryCodes(source.id, undefined);
    await db()('user_roles').insert([
      { user_id: source.id, role_id: await roleId('admin') },
      { user_id: source.id, role_id: await roleId('guest') },
      { user_id: winner.id, role_id: await roleId('guest') },
    ]);

    const res = await api.post(`/users/${winner.id}/merge`, { sourceUserId: source.id });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.mfa.enrolled, ['totp'], "the source's authenticator is now the winner's");
    // It works for the winner: the secret was sealed for the factor, not for the user.
    assert.equal(await ts.server.services.mfa.verifyTotp(winner.id, await codeAt(sourceSecret)), 'ok');
    assert.deepEqual(await rolesOf(winner.id), ['admin', 'guest'], 'the union of both, once each');
    assert.deepEqual(await rolesOf(source.id), []);
    assert.equal(Number((await db()('mfa_factors').where({ user_id: source.id }).count({ n: '*' }))[0]!.n), 0, 'nothing left on the source');
    assert.equal(Number((await db()('mfa_recovery_codes').where({ user_id: source.id }).count({ n: '*' }))[0]!.n), 0, 'recovery codes bound to the source are gone');
    const [merged] = await eventsOf('user.merged', winner.id);
    assert.deepEqual(merged.payload.moved, { identities: 0, factors: 1, roles: 1 });
    assert.deepEqual(merged.payload.dropped, { identities: 0, factors: 1 });

    // Both with an authenticator: the winner's stays, the source's goes.
    const other = await createUser(ts);
    await enrolTotp(ts, other.id);
    const winnersFactor = (await db()('mfa_factors').where({ user_id: winner.id, type: 'totp' }).first()).id;
    const second = await api.post(`/users/${winner.id}/merge`, { sourceUserId: other.id });
    assert.equal(second.status, 200, second.text);
    assert.deepEqual((await db()('mfa_factors').where({ user_id: winner.id }).select('id')).map((f: { id: string }) => f.id), [winnersFactor]);
    assert.equal(await ts.server.services.mfa.verifyTotp(winner.id, await codeAt(sourceSecret, 1)), 'ok', 'the winner keeps its own');
  });

  it("a provider both are linked to keeps the winner's link; passkeys move as second factors only", async () => {
    const winner = await federatedUser();
    const source = await federatedUser();
    const factorId = crypto.randomUUID();
    await db()('mfa_factors').insert({ id: factorId, tenant_id: 'default', user_id: source.id, type: 'webauthn', name: 'Key', confirmed_at: new Date() });
    await db()('webauthn_credentials').insert({
      factor_id: factorId, user_id: source.id, credential_id: marker('cred'), public_key: 'AAAA', device_type: 'multiDevice', aaguid: '00000000-0000-0000-0000-000000000000', discoverable: true,
    });

    const res = await api.post(`/users/${winner.id}/merge`, { sourceUserId: source.id });
    assert.equal(res.status, 200, res.text);
    const links = await db()('federated_identities').where({ provider_id: providerId }).whereIn('user_id', [winner.id, source.id]);
    assert.deepEqual(links.map((l: { user_id: string; subject: string }) => [l.user_id, l.subject]), [[winner.id, winner.sub]], "only the winner's link");
    assert.deepEqual(res.body.mfa.enrolled, ['webauthn']);
    const credential = await db()('webauthn_credentials').where({ factor_id: factorId }).first();
    assert.equal(credential.user_id, winner.id);
    assert.equal(credential.discoverable, false, 'no longer offered for passwordless sign-in');
    const [merged] = await eventsOf('user.merged', winner.id);
    assert.deepEqual(merged.payload.moved, { identities: 0, factors: 1, roles: 0 });
    assert.deepEqual(merged.payload.dropped, { identities: 1, factors: 0 });
  });

  it('honours Idempotency-Key: the replay answers the same and merges nothing twice', async () => {
    const winner = await createUser(ts);
    const source = await createUser(ts);
    const key = `merge-${marker()}`;
    const first = await api.post(`/users/${winner.id}/merge`, { sourceUserId: source.id }, { headers: { 'idempotency-key': key } });
    assert.equal(first.status, 200, first.text);
    const replay = await api.post(`/users/${winner.id}/merge`, { sourceUserId: source.id }, { headers: { 'idempotency-key': key } });
    assert.equal(replay.status, 200, replay.text);
    assert.deepEqual(replay.body, first.body);
    assert.equal((await eventsOf('user.merged', winner.id)).length, 1, 'one merge');
    assert.equal((await eventsOf('user.deleted', source.id)).length, 1);
    // Without the key, merging a deactivated source again is refused.
    assertError(await api.post(`/users/${winner.id}/merge`, { sourceUserId: source.id }), 422, 'IDENT_USER_DEACTIVATED');
    assertError(await api.post(`/users/${winner.id}/merge`, { sourceUserId: winner.id }, { headers: { 'idempotency-key': key } }), 409, 'IDENT_IDEMPOTENCY_MISMATCH');
  });

  it("refuses another tenant's users with 403 IDENT_CROSS_TENANT and changes nothing", async () => {
    const tenant = marker('t');
    await db()('tenants').insert({ id: tenant, name: 'Elsewhere', slug: `${tenant}-slug` });
    const foreign = crypto.randomUUID();
    await db()('users').insert({ id: foreign, tenant_id: tenant, email: uniqueEmail('foreign'), email_verified: true });
    const local = await createUser(ts);
    await db()('user_roles').insert({ user_id: local.id, role_id: await roleId('guest') });
    const snapshot = async () => ({
      users: await db()('users').whereIn('id', [foreign, local.id]).orderBy('id').select('id', 'status', 'updated_at'),
      roles: await db()('user_roles').whereIn('user_id', [foreign, local.id]).orderBy('user_id').select('*'),
      events: Number((await db()('events').whereIn('subject_id', [foreign, local.id]).count({ n: '*' }))[0]!.n),
    });
    const before = await snapshot();
    assertError(await api.post(`/users/${local.id}/merge`, { sourceUserId: foreign }), 403, 'IDENT_CROSS_TENANT');
    assertError(await api.post(`/users/${foreign}/merge`, { sourceUserId: local.id }), 403, 'IDENT_CROSS_TENANT');
    assert.deepEqual(await snapshot(), before, 'nothing changed');
  });

  it('validates: 400 for a missing, malformed or same source and unknown fields; 404 unknown; 422 deactivated', async () => {
    const user = await createUser(ts);
    for (const body of [{}, { sourceUserId: 'not-a-uuid' }, { sourceUserId: user.id }, { sourceUserId: crypto.randomUUID(), extra: 1 }, { sourceUserId: 42 }]) {
      assertError(await api.post(`/users/${user.id}/merge`, body), 400, 'IDENT_VALIDATION', JSON.stringify(body));
    }
    assertError(await api.call('POST', `/users/${user.id}/merge`, { raw: 'sourceUserId=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), 415, 'IDENT_UNSUPPORTED_MEDIA_TYPE');
    assertError(await api.post(`/users/${user.id}/merge`, { sourceUserId: crypto.randomUUID() }), 404, 'IDENT_USER_NOT_FOUND');
    assertError(await api.post(`/users/${crypto.randomUUID()}/merge`, { sourceUserId: user.id }), 404, 'IDENT_USER_NOT_FOUND');
    const gone = await createUser(ts);
    assert.equal((await api.delete(`/users/${gone.id}`)).status, 200);
    assertError(await api.post(`/users/${user.id}/merge`, { sourceUserId: gone.id }), 422, 'IDENT_USER_DEACTIVATED');
    assertError(await api.post(`/users/${gone.id}/merge`, { sourceUserId: user.id }), 422, 'IDENT_USER_DEACTIVATED');
    assert.equal((await api.get(`/users/${user.id}`)).body.status, 'active');
    // iam.users:update is needed.
    const reader = await adminToken(ts, ['iam.users:read']);
    assertError(await api.post(`/users/${user.id}/merge`, { sourceUserId: gone.id }, { token: reader }), 403, 'IDENT_FORBIDDEN');
  });
});
