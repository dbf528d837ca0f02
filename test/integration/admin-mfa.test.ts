import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { AdminApi, adminToken, assertError, startAdminServer } from '../helpers/admin.ts';
import { loginStatus } from '../helpers/login-page.ts';
import { fastMailSettings, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { afterPassword, codeAt, postSecondFactor, userWithTotp } from '../helpers/mfa.ts';

/**
 * The help desk through the admin API with real tokens: what an operator sees of a user's second
 * factors and lockout (GET /users/:id), resetting the factors (POST /users/:id/mfa/reset) and
 * ending a lockout (POST /users/:id/unlock), checked against real sign-ins on the login pages.
 */

// Above the factor lock (5 wrong codes), so a factor can be locked without locking the account.
const THRESHOLD = 6;


describe('admin API: second factors and lockouts (help desk)', () => {
  let ts: TestServer;
  let mailbox: Mailbox;
  let api: AdminApi;
  let readOnly: string;
  let config: oidc.Configuration;
  let clientId: string;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startAdminServer({ ...fastMailSettings(mailbox.url), LOCKOUT_THRESHOLD: String(THRESHOLD) });
    api = new AdminApi(ts, await adminToken(ts));
    readOnly = await adminToken(ts, ['iam.users:read']);
    const client = await registerClient(ts, { token_endpoint_auth_method: 'none' }, true);
    clientId = client.clientId;
    config = await rpConfig(ts, client);
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  const events = (userId: string, type: string) => ts.server.services.db('events').where({ subject_id: userId, type }).orderBy('occurred_at');
  const userinfoStatus = async (accessToken: string) =>
    (await fetch(new URL('/me', ts.issuer), { headers: { authorization: `Bearer ${accessToken}` } })).status;

  it('GET /users/:id shows the enrolled factors, whether a sign-in asks for one, and no lock', async () => {
    const plain = await createUser(ts);
    const none = await api.get(`/users/${plain.id}`);
    assert.equal(none.status, 200, none.text);
    assert.deepEqual(none.body.mfa, { enrolled: [], required: false, locked: [] });
    assert.deepEqual(none.body.lock, { locked: false, lockedUntil: null, failedAttempts: 0, addressFailures: 0 });

    const user = await userWithTotp(ts);
    const totp = await api.get(`/users/${user.id}`);
    assert.deepEqual(totp.body.mfa, { enrolled: ['totp'], required: true, locked: [] });
    await ts.server.services.mfa.regenerateRecoveryCodes(user.id, undefined);
    assert.deepEqual((await api.get(`/users/${user.id}`)).body.mfa, { enrolled: ['totp', 'recovery'], required: true, locked: [] });

    // Recovery codes alone never make a sign-in ask for a second step.
    const codesOnly = await createUser(ts);
    await ts.server.services.mfa.regenerateRecoveryCodes(codesOnly.id, undefined);
    assert.deepEqual((await api.get(`/users/${codesOnly.id}`)).body.mfa, { enrolled: ['recovery'], required: false, locked: [] });
    // The list stays as it was: no per-user lookups there.
    const listed = await api.get(`/users?search=${encodeURIComponent(user.email)}`);
    assert.equal(listed.body.data[0].mfa, undefined);
  });

  it('a reset removes every factor, ends the sessions and tokens, mails the user and records the admin client; then the password alone signs in', async () => {
    const user = await userWithTotp(ts);
    await ts.server.services.mfa.regenerateRecoveryCodes(user.id, undefined);
    // A session made with the second factor, with its tokens.
    const first = await afterPassword(config, user);
    assert.match(first.next.pathname, /^\/interaction\/[^/]+\/mfa$/, 'before the reset the password leads to the second step');
    const right = await postSecondFactor(first.browser, first.next, await codeAt(user.secret));
    assert.equal(right.status, 303);
    const done = await first.browser.follow(new URL(right.headers.get('location')!, first.next), {}, first.isCallback);
    const tokens = await first.request.redeem(done.url);
    assert.equal(await userinfoStatus(tokens.access_token), 200);

    const reset = await api.post(`/users/${user.id}/mfa/reset`);
    assert.equal(reset.status, 200, reset.text);
    assert.equal(reset.body.id, user.id);
    assert.deepEqual(reset.body.mfa, { enrolled: [], required: false, locked: [] });
    assert.deepEqual(await ts.server.services.mfa.enrolledFactors(user.id), [], 'no factor left');
    assert.equal(await ts.server.services.mfa.remainingRecoveryCodes(user.id), 0);
    assert.equal((await ts.server.services.db('mfa_recovery_codes').where({ user_id: user.id })).length, 0, 'the codes are gone with their set');
    assert.equal(await userinfoStatus(tokens.access_token), 401, 'the token of the session made with the old factor stops working');

    const mail = await mailbox.next(user.email, /^Two-step verification was reset on your account$/);
    assert.match(mail.text, /An administrator reset two-step verification/);
    assert.match(mail.text, /signed out everywhere/);

    const [event, ...more] = await events(user.id, 'user.mfa_reset');
    assert.equal(more.length, 0);
    assert.equal(event.actor_id, 'admin', 'the admin client is the actor');
    assert.ok(event.request_id, 'and the request is named');
    assert.deepEqual(event.payload.factors.map((f: { type: string }) => f.type).sort(), ['recovery', 'totp']);
    assert.equal(event.payload.by, 'admin');
    assert.ok(!JSON.stringify(event.payload).includes(user.secret), 'no secret in the event');

    // The password alone now completes the sign-in (signIn fails on any other page).
    const later = await signIn(ts, config, user, { scope: 'openid email' });
    assert.deepEqual(later.tokens.claims()!.amr, ['pwd']);

    // Again: nothing left to remove, so nothing else ends; the operator's act is still on record.
    const again = await api.post(`/users/${user.id}/mfa/reset`);
    assert.equal(again.status, 200);
    assert.equal(await userinfoStatus(later.tokens.access_token), 200, 'a reset with nothing to remove leaves the new session alone');
    assert.equal((await events(user.id, 'user.mfa_reset')).length, 2);
  });

  it('the reset mail is in the user\'s language', async () => {
    const user = await userWithTotp(ts, { locale: 'vi' });
    assert.equal((await api.post(`/users/${user.id}/mfa/reset`)).status, 200);
    const mail = await mailbox.next(user.email, /^Xác minh hai bước của tài khoản của bạn đã được đặt lại$/);
    assert.match(mail.text, /Quản trị viên đã đặt lại xác minh hai bước/);
  });

  it('a locked account shows lockedUntil and its failures; unlock lets the right password in at once', async () => {
    const user = await createUser(ts);
    const statuses = [];
    for (let i = 0; i < THRESHOLD; i++) statuses.push(await loginStatus(ts, clientId, user.email, 'wrong password, not it'));
    assert.equal(statuses.at(-1), 429, `the last failure locks: ${statuses}`);
    assert.equal(await loginStatus(ts, clientId, user.email, user.password), 429, 'the right password is refused while locked');

    // The account's own record is written after each answer: wait for it.
    const locked = await waitFor('the account record to count every failure', async () => {
      const res = await api.get(`/users/${user.id}`);
      return res.body.lock.failedAttempts === THRESHOLD ? res : undefined;
    });
    assert.equal(locked.body.lock.locked, true);
    assert.equal(locked.body.lock.addressFailures, THRESHOLD);
    const until = Date.parse(locked.body.lock.lockedUntil);
    const duration = 900_000; // LOCKOUT_DURATION_SECONDS default
    assert.ok(until > Date.now() + duration - 120_000 && until <= Date.now() + duration + 5_000, `lockedUntil about 15 minutes ahead: ${locked.body.lock.lockedUntil}`);

    const unlocked = await api.post(`/users/${user.id}/unlock`);
    assert.equal(unlocked.status, 200, unlocked.text);
    assert.deepEqual(unlocked.body.lock, { locked: false, lockedUntil: null, failedAttempts: 0, addressFailures: 0 });
    assert.equal(await loginStatus(ts, clientId, user.email, user.password), 303, 'the right password works at once');

    const [event] = await events(user.id, 'user.unlocked');
    assert.equal(event.actor_id, 'admin');
    assert.equal(event.payload.before.locked, true);
    assert.equal(event.payload.before.failedAttempts, THRESHOLD);
  });

  it('either record alone shows as locked, and unlock ends each: the address counter, the account\'s own', async () => {
    // The address is counted before it has an account: the new account's row is clean, the address locked.
    const email = `help-${randomUUID()}@example.test`;
    for (let i = 0; i < THRESHOLD; i++) await loginStatus(ts, clientId, email, 'wrong password, not it');
    const created = await api.post('/users', { email, password: 'correct horse battery staple', emailVerified: true });
    assert.equal(created.status, 201, created.text);
    const byAddress = await api.get(`/users/${created.body.id}`);
    assert.equal(byAddress.body.lock.locked, true, JSON.stringify(byAddress.body.lock));
    assert.equal(byAddress.body.lock.failedAttempts, 0);
    assert.equal(byAddress.body.lock.addressFailures, THRESHOLD);
    assert.ok(Date.parse(byAddress.body.lock.lockedUntil) > Date.now() + 800_000, 'the counter\'s window ends about 15 minutes after the first failure');
    assert.equal(await loginStatus(ts, clientId, email, 'correct horse battery staple'), 429);
    assert.equal((await api.post(`/users/${created.body.id}/unlock`)).status, 200);
    assert.equal(await loginStatus(ts, clientId, email, 'correct horse battery staple'), 303);

    // The account's row alone: locked under its old address, then given a new one.
    const user = await createUser(ts);
    for (let i = 0; i < THRESHOLD; i++) await loginStatus(ts, clientId, user.email, 'wrong password, not it');
    await waitFor('the lock recorded', async () => (await api.get(`/users/${user.id}`)).body.lock.failedAttempts === THRESHOLD);
    const moved = `moved-${randomUUID()}@example.test`;
    assert.equal((await api.patch(`/users/${user.id}`, { email: moved, emailVerified: true })).status, 200);
    const byRecord = await api.get(`/users/${user.id}`);
    assert.equal(byRecord.body.lock.locked, true, JSON.stringify(byRecord.body.lock));
    assert.equal(byRecord.body.lock.addressFailures, 0);
    assert.ok(Date.parse(byRecord.body.lock.lockedUntil) > Date.now() + 800_000);
    assert.equal(await loginStatus(ts, clientId, moved, user.password), 429, 'the account itself is locked');
    assert.equal((await api.post(`/users/${user.id}/unlock`)).status, 200);
    assert.equal(await loginStatus(ts, clientId, moved, user.password), 303);
  });

  it('unlock also ends a factor lock: the right code works on the same second-step page', async () => {
    const user = await userWithTotp(ts);
    const { browser, next, isCallback, request } = await afterPassword(config, user);
    const near = new Set(await Promise.all([-1, 0, 1].map((s) => codeAt(user.secret, s))));
    const wrong = ['000000', '111111', '222222', '333333', '444444', '555555'].find((c) => !near.has(c))!;
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await postSecondFactor(browser, next, wrong)).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 429], 'the fifth wrong code locks the factor');
    const seen = await api.get(`/users/${user.id}`);
    assert.deepEqual(seen.body.mfa.locked, ['totp']);
    assert.equal(seen.body.lock.locked, false, 'the account itself is below its threshold');
    assert.equal(seen.body.lock.failedAttempts, 5, 'every wrong code counted toward it');
    assert.equal((await postSecondFactor(browser, next, await codeAt(user.secret))).status, 429, 'the right code is refused while locked');

    const unlocked = await api.post(`/users/${user.id}/unlock`);
    assert.equal(unlocked.status, 200);
    assert.deepEqual(unlocked.body.mfa.locked, []);
    assert.equal(unlocked.body.lock.locked, false);
    const right = await postSecondFactor(browser, next, await codeAt(user.secret));
    assert.equal(right.status, 303, 'the right code works at once');
    const done = await browser.follow(new URL(right.headers.get('location')!, next), {}, isCallback);
    assert.deepEqual((await request.redeem(done.url)).claims()!.amr, ['pwd', 'otp', 'mfa']);
  });

  it('iam.users:read sees the state but cannot reset or unlock (403, nothing changes)', async () => {
    const user = await userWithTotp(ts);
    for (let i = 0; i < THRESHOLD; i++) await loginStatus(ts, clientId, user.email, 'wrong password, not it');
    await waitFor('the lock recorded', async () => (await api.get(`/users/${user.id}`)).body.lock.failedAttempts === THRESHOLD);

    const read = await api.get(`/users/${user.id}`, { token: readOnly });
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.mfa.enrolled, ['totp']);
    assert.equal(read.body.lock.locked, true);

    assertError(await api.post(`/users/${user.id}/mfa/reset`, undefined, { token: readOnly }), 403, 'IDENT_FORBIDDEN', 'reset with read only');
    assertError(await api.post(`/users/${user.id}/unlock`, undefined, { token: readOnly }), 403, 'IDENT_FORBIDDEN', 'unlock with read only');
    const suspendOnly = await adminToken(ts, ['iam.users:suspend']);
    assertError(await api.post(`/users/${user.id}/unlock`, undefined, { token: suspendOnly }), 403, 'IDENT_FORBIDDEN', 'unlock with suspend only');

    const afterwards = await api.get(`/users/${user.id}`);
    assert.deepEqual(afterwards.body.mfa.enrolled, ['totp'], 'the factor stays');
    assert.equal(afterwards.body.lock.locked, true, 'the lock stays');
    assert.equal(afterwards.body.lock.failedAttempts, THRESHOLD);
    assert.equal(await loginStatus(ts, clientId, user.email, user.password), 429);
    assert.equal((await events(user.id, 'user.mfa_reset')).length, 0);
    assert.equal((await events(user.id, 'user.unlocked')).length, 0);
  });

  it('an unknown user is 404 IDENT_USER_NOT_FOUND; a deactivated one cannot be changed', async () => {
    for (const id of [randomUUID(), 'not-a-uuid']) {
      assertError(await api.get(`/users/${id}`), 404, 'IDENT_USER_NOT_FOUND', `get ${id}`);
      assertError(await api.post(`/users/${id}/mfa/reset`), 404, 'IDENT_USER_NOT_FOUND', `reset ${id}`);
      assertError(await api.post(`/users/${id}/unlock`), 404, 'IDENT_USER_NOT_FOUND', `unlock ${id}`);
    }
    const gone = await userWithTotp(ts);
    assert.equal((await api.delete(`/users/${gone.id}`)).status, 200);
    assertError(await api.post(`/users/${gone.id}/mfa/reset`), 422, 'IDENT_USER_DEACTIVATED');
    assertError(await api.post(`/users/${gone.id}/unlock`), 422, 'IDENT_USER_DEACTIVATED');
    assert.deepEqual((await api.get(`/users/${gone.id}`)).body.mfa.enrolled, ['totp']);
  });

  it('the OpenAPI document describes both actions with their scope', async () => {
    const doc = (await api.get('/openapi.json')).body;
    const paths = Object.keys(doc.paths);
    const reset = paths.find((p) => /^\/api\/v1\/users\/\{id\}\/mfa\/reset$/.test(p));
    const unlock = paths.find((p) => /^\/api\/v1\/users\/\{id\}\/unlock$/.test(p));
    assert.ok(reset && unlock, paths.join(' '));
    assert.match(JSON.stringify(doc.paths[reset].post), /iam\.users:update/);
    assert.match(JSON.stringify(doc.paths[unlock].post), /iam\.users:update/);
  });
});
