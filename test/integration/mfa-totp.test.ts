import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { allRowsAsText } from '../helpers/db.ts';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { fastMailSettings, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { createUser, registerClient, rejectsWithOAuthError, rpConfig, signIn } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { createLogger } from '../../src/infra/logger.ts';
import { callUserApi } from '../helpers/user-api.ts';
import { codeAt } from '../helpers/mfa.ts';

/** A 6-digit code that is none of the codes accepted now (the previous, current and next step). */
async function wrongCode(secret: string): Promise<string> {
  const near = new Set(await Promise.all([-2, -1, 0, 1, 2].map((s) => codeAt(secret, s))));
  for (let n = 0; ; n++) {
    const candidate = String(n).padStart(6, '0');
    if (!near.has(candidate)) return candidate;
  }
}

/** TOTP and recovery codes through the account API (/api/v1/me/mfa*) with real user tokens, and the verifier the sign-in step will call. */
describe('second factors: TOTP and recovery codes', () => {
  let ts: TestServer;
  let mailbox: Mailbox;
  const logs = logCapture();

  before(async () => {
    mailbox = await startMailbox();
    // These tests manage factors through the account API and sign the same user in again after
    // enrolling; the sign-in step that asks for the factor is mfa-sign-in.test.ts's.
    ts = await startTestServer(
      { ...fastMailSettings(mailbox.url), ME_API_RATE_LIMIT_PER_USER: '1000', MFA_POLICY: 'off' },
      { logger: createLogger('trace', logs.stream) },
    );
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  const call = (method: string, path: string, token: string | undefined, body?: unknown) => callUserApi(ts, method, path, token, body);

  /** A user signed in through a (first-party unless said otherwise) client, in a browser of its own. */
  async function signedIn(user: { email: string; password: string }, firstParty = true) {
    const client = await registerClient(ts, { scope: 'openid email profile offline_access' }, firstParty);
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid email profile offline_access', prompt: 'consent', browser: new HttpBrowser() });
    return { config, tokens, accessToken: tokens.access_token };
  }

  /** An enrolled and confirmed TOTP factor of a new user (confirmed with the current code). */
  async function withTotp() {
    const user = await createUser(ts);
    const session = await signedIn(user);
    const enrolled = await call('POST', '/api/v1/me/mfa/totp/enroll', session.accessToken);
    assert.equal(enrolled.status, 201);
    const { factorId, secret } = enrolled.body as { factorId: string; secret: string };
    const confirmed = await call('POST', '/api/v1/me/mfa/totp/confirm', session.accessToken, { factorId, code: await codeAt(secret) });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    return { user, session, factorId, secret };
  }

  it('enrollment answers the secret, an otpauth URI naming issuer and account, and a PNG QR code; confirming activates the factor', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user);
    const enrolled = await call('POST', '/api/v1/me/mfa/totp/enroll', accessToken);
    assert.equal(enrolled.status, 201);
    assert.equal(enrolled.headers.get('cache-control'), 'no-store');
    const { factorId, secret, otpauthUri, qrCode } = enrolled.body as Record<string, string>;
    assert.match(secret!, /^[A-Z2-7]{32}$/, 'a base32 secret of 160 bits');

    const uri = new URL(otpauthUri!);
    assert.equal(uri.protocol, 'otpauth:');
    assert.equal(uri.host, 'totp');
    assert.equal(decodeURIComponent(uri.pathname), `/127.0.0.1:${user.email}`, 'label: issuer and the account email');
    assert.equal(uri.searchParams.get('secret'), secret);
    assert.equal(uri.searchParams.get('issuer'), '127.0.0.1');

    const png = /^data:image\/png;base64,([A-Za-z0-9+/]+=*)$/.exec(qrCode!);
    assert.ok(png, 'a data: URL of a PNG');
    const bytes = Buffer.from(png[1]!, 'base64');
    assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
    assert.equal(bytes.subarray(12, 16).toString('latin1'), 'IHDR');
    assert.ok(bytes.readUInt32BE(16) >= 100 && bytes.readUInt32BE(16) === bytes.readUInt32BE(20), 'a square image');

    // Not a factor until confirmed.
    assert.deepEqual((await call('GET', '/api/v1/me/mfa', accessToken)).body!.data, []);

    const confirmed = await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: await codeAt(secret!) });
    assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
    assert.equal(confirmed.body!.id, factorId);
    assert.equal(confirmed.body!.type, 'totp');
    assert.equal(typeof confirmed.body!.name, 'string');
    assert.ok(Date.parse(confirmed.body!.createdAt) > 0);
    assert.deepEqual(Object.keys(confirmed.body!).sort(), ['createdAt', 'id', 'lastUsedAt', 'name', 'type']);

    const list = await call('GET', '/api/v1/me/mfa', accessToken);
    assert.equal(list.status, 200);
    assert.deepEqual((list.body!.data as Array<{ id: string; type: string }>).map((f) => [f.id, f.type]), [[factorId, 'totp']]);
    assert.ok(!JSON.stringify(list.body).includes(secret!), 'no secret in the list');
    const enrolledFactors = await ts.server.services.mfa.enrolledFactors(user.id);
    assert.deepEqual(enrolledFactors.map((f) => f.type), ['totp']);

    // A confirmed enrollment cannot be confirmed again (nothing pending under that id).
    const again = await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: await codeAt(secret!, 1) });
    assert.equal(again.status, 404);
    assert.equal(again.body!.error, 'IDENT_MFA_FACTOR_NOT_FOUND');
  });

  it('a wrong code is 400 IDENT_OTP_INVALID; the 5th wrong code locks the enrollment (429 IDENT_OTP_LOCKED), even for the right code', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user);
    const { factorId, secret } = (await call('POST', '/api/v1/me/mfa/totp/enroll', accessToken)).body as { factorId: string; secret: string };
    const wrong = await wrongCode(secret);
    for (let i = 1; i <= 4; i++) {
      const res = await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: wrong });
      assert.equal(res.status, 400, `wrong code ${i}`);
      assert.equal(res.body!.error, 'IDENT_OTP_INVALID');
    }
    const fifth = await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: wrong });
    assert.equal(fifth.status, 429);
    assert.equal(fifth.body!.error, 'IDENT_OTP_LOCKED');
    const right = await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: await codeAt(secret) });
    assert.equal(right.status, 429);
    assert.equal(right.body!.error, 'IDENT_OTP_LOCKED');
    assert.deepEqual((await call('GET', '/api/v1/me/mfa', accessToken)).body!.data, [], 'nothing was activated');

    // Malformed codes are refused by the schema.
    const malformed = await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: '12345' });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body!.error, 'IDENT_VALIDATION');

    // A new enrollment starts afresh and replaces the locked one.
    const next = (await call('POST', '/api/v1/me/mfa/totp/enroll', accessToken)).body as { factorId: string; secret: string };
    assert.equal((await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: await codeAt(secret) })).status, 404, 'the old enrollment is gone');
    assert.equal((await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId: next.factorId, code: await codeAt(next.secret) })).status, 200);
  });

  it('an enrollment not confirmed within 10 minutes is gone', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user);
    const { factorId, secret } = (await call('POST', '/api/v1/me/mfa/totp/enroll', accessToken)).body as { factorId: string; secret: string };
    await ts.server.services.db('mfa_factors').where({ id: factorId }).update({ created_at: ts.server.services.db.raw("now() - interval '10 minutes 1 second'") });
    const res = await call('POST', '/api/v1/me/mfa/totp/confirm', accessToken, { factorId, code: await codeAt(secret) });
    assert.equal(res.status, 404);
    assert.equal(res.body!.error, 'IDENT_MFA_FACTOR_NOT_FOUND');
  });

  it('the verifier accepts a code within one step of drift, once per step; the enrollment code cannot be replayed at sign-in', async () => {
    const { user, secret } = await withTotp();
    const mfa = ts.server.services.mfa;
    // The current step was used to confirm: its code is spent.
    assert.equal(await mfa.verifyTotp(user.id, await codeAt(secret)), 'invalid', 'the confirmation code again');
    const next = await codeAt(secret, 1);
    assert.equal(await mfa.verifyTotp(user.id, next), 'ok', 'the next step, within the drift window');
    assert.equal(await mfa.verifyTotp(user.id, next), 'invalid', 'the same code twice in one step');
    assert.equal(await mfa.verifyTotp(user.id, await codeAt(secret, 3)), 'invalid', 'three steps ahead is outside the window');
    const [factor] = await mfa.enrolledFactors(user.id);
    assert.ok(factor!.lastUsedAt, 'lastUsedAt is set');
    // Another user's valid code is nothing for this one.
    const other = await withTotp();
    assert.equal(await mfa.verifyTotp(user.id, await codeAt(other.secret, 1)), 'invalid');
  });

  it('5 wrong TOTP codes lock the factor for 15 minutes and count toward the account lockout, with recovery-code failures', async () => {
    const { user, secret } = await withTotp();
    const mfa = ts.server.services.mfa;
    const wrong = await wrongCode(secret);
    assert.deepEqual(
      [await mfa.verifyTotp(user.id, wrong), await mfa.verifyTotp(user.id, wrong), await mfa.verifyTotp(user.id, wrong), await mfa.verifyTotp(user.id, wrong)],
      ['invalid', 'invalid', 'invalid', 'invalid'],
    );
    assert.equal(await mfa.verifyTotp(user.id, wrong), 'locked', 'the 5th wrong code locks');
    assert.equal(await mfa.verifyTotp(user.id, await codeAt(secret, 1)), 'locked', 'the right code too while locked');
    const row = await ts.server.services.repos.users.findById(user.id);
    assert.equal(row!.failed_attempts, 5, 'each wrong code counted on the account');
    const failures = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.sign_in_failed' });
    assert.equal(failures.length, 5);
    assert.equal(failures[0].payload.reason, 'invalid_second_factor');
    assert.ok(!JSON.stringify(failures).includes(wrong), 'no code in the events');

    // Five wrong recovery codes lock those and bring the account to LOCKOUT_THRESHOLD (10).
    await mfa.regenerateRecoveryCodes(user.id, undefined);
    for (let i = 0; i < 4; i++) assert.equal(await mfa.useRecoveryCode(user.id, 'aaaaa-bbbbb'), 'invalid');
    assert.equal(await mfa.useRecoveryCode(user.id, 'aaaaa-bbbbb'), 'locked');
    const auth = await ts.server.services.accounts.authenticate(user.email, user.password);
    assert.deepEqual(auth, { ok: false, reason: 'locked' }, 'the account is locked: the right password is refused');
    assert.ok(await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.locked' }).first(), 'user.locked recorded');
  });

  it('recovery codes: 10, each usable once, regenerating voids the old set; never stored in clear', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user);
    const mfa = ts.server.services.mfa;
    const first = await call('POST', '/api/v1/me/mfa/recovery-codes', accessToken);
    assert.equal(first.status, 201);
    const codes = first.body!.codes as string[];
    assert.equal(codes.length, 10);
    assert.equal(new Set(codes).size, 10);
    for (const c of codes) assert.match(c, /^[0-9a-z]{5}-[0-9a-z]{5}$/);

    assert.equal(await mfa.useRecoveryCode(user.id, codes[0]!), 'ok');
    assert.equal(await mfa.useRecoveryCode(user.id, codes[0]!), 'invalid', 'used once only');
    assert.equal(await mfa.remainingRecoveryCodes(user.id), 9);
    // Another user cannot use this user's codes.
    const stranger = await createUser(ts);
    await mfa.regenerateRecoveryCodes(stranger.id, undefined);
    assert.equal(await mfa.useRecoveryCode(stranger.id, codes[1]!), 'invalid');

    const second = await call('POST', '/api/v1/me/mfa/recovery-codes', accessToken);
    assert.equal(second.status, 201);
    const fresh = second.body!.codes as string[];
    assert.equal(fresh.length, 10);
    assert.equal(await mfa.useRecoveryCode(user.id, codes[1]!), 'invalid', 'an unused code of the old set stopped working');
    // Typed forgivingly: upper case, no dash, spaces.
    assert.equal(await mfa.useRecoveryCode(user.id, ` ${fresh[0]!.replace('-', '').toUpperCase()} `), 'ok');
    for (const c of fresh.slice(1)) assert.equal(await mfa.useRecoveryCode(user.id, c), 'ok', c);
    assert.equal(await mfa.remainingRecoveryCodes(user.id), 0);
    assert.equal(await mfa.useRecoveryCode(user.id, fresh[3]!), 'invalid');

    const list = (await call('GET', '/api/v1/me/mfa', accessToken)).body!.data as Array<Record<string, unknown>>;
    assert.deepEqual(list.map((f) => f.type), ['recovery'], 'one set listed');
    assert.ok(list[0]!.lastUsedAt);

    const dump = await allRowsAsText(ts.server.services.db);
    for (const c of [...codes, ...fresh]) {
      assert.ok(!dump.includes(c) && !dump.includes(c.replace('-', '')), 'no recovery code in clear in the database');
    }
  });

  it('the secret never appears in GET answers, in the database in clear, or in the logs', async () => {
    const { session, secret } = await withTotp();
    for (const path of ['/api/v1/me/mfa', '/api/v1/me', '/api/v1/me/sessions']) {
      const res = await call('GET', path, session.accessToken);
      assert.equal(res.status, 200, path);
      assert.ok(!JSON.stringify(res.body).includes(secret), `no secret in ${path}`);
    }
    const dump = await allRowsAsText(ts.server.services.db);
    assert.ok(dump.includes('mfa_factors: '), 'the factor row is in the dump');
    assert.ok(!dump.includes(secret) && !dump.toLowerCase().includes(secret.toLowerCase()), 'no secret in clear in the database');
    assert.ok(logs.lines.length > 0, 'the logs were captured');
    assert.ok(!JSON.stringify(logs.lines).includes(secret), 'no secret in the logs');
  });

  it('one authenticator per user: confirming a new one replaces the old, whose codes stop working', async () => {
    const { user, session, factorId, secret } = await withTotp();
    const next = (await call('POST', '/api/v1/me/mfa/totp/enroll', session.accessToken)).body as { factorId: string; secret: string };
    // Until the new one is confirmed the old one works.
    assert.equal(await ts.server.services.mfa.verifyTotp(user.id, await codeAt(next.secret, 1)), 'invalid');
    assert.equal((await call('POST', '/api/v1/me/mfa/totp/confirm', session.accessToken, { factorId: next.factorId, code: await codeAt(next.secret) })).status, 200);
    const list = (await call('GET', '/api/v1/me/mfa', session.accessToken)).body!.data as Array<{ id: string }>;
    assert.deepEqual(list.map((f) => f.id), [next.factorId]);
    assert.equal(await ts.server.services.mfa.verifyTotp(user.id, await codeAt(secret, 1)), 'invalid', 'the old app');
    assert.equal(await ts.server.services.mfa.verifyTotp(user.id, await codeAt(next.secret, 1)), 'ok', 'the new app');
    const removed = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.mfa_removed' });
    assert.deepEqual(removed.map((e) => e.payload.factor.id), [factorId]);
  });

  it('delete: 204 and gone; another user\'s factor is 404 and stays', async () => {
    const { user, session, factorId, secret } = await withTotp();
    const other = await withTotp();
    const foreign = await call('DELETE', `/api/v1/me/mfa/${other.factorId}`, session.accessToken);
    assert.equal(foreign.status, 404);
    assert.equal(foreign.body!.error, 'IDENT_MFA_FACTOR_NOT_FOUND');
    assert.equal((await call('DELETE', '/api/v1/me/mfa/not-a-uuid', session.accessToken)).status, 404);
    assert.equal((await ts.server.services.mfa.enrolledFactors(other.user.id)).length, 1, 'the other user\'s factor stays');
    // Nor can another user's pending enrollment be confirmed.
    const pending = (await call('POST', '/api/v1/me/mfa/totp/enroll', other.session.accessToken)).body as { factorId: string; secret: string };
    for (const code of [await wrongCode(pending.secret), await codeAt(pending.secret)]) {
      const stolen = await call('POST', '/api/v1/me/mfa/totp/confirm', session.accessToken, { factorId: pending.factorId, code });
      assert.equal(stolen.status, 404, 'the same answer for a wrong and a right code: nothing to learn');
      assert.equal(stolen.body!.error, 'IDENT_MFA_FACTOR_NOT_FOUND');
    }
    const owner = await call('POST', '/api/v1/me/mfa/totp/confirm', other.session.accessToken, { factorId: pending.factorId, code: await codeAt(pending.secret) });
    assert.equal(owner.status, 200, 'the stranger\'s tries spent nothing of the owner\'s enrollment');

    const res = await call('DELETE', `/api/v1/me/mfa/${factorId}`, session.accessToken);
    assert.equal(res.status, 204);
    assert.deepEqual((await call('GET', '/api/v1/me/mfa', session.accessToken)).body!.data, []);
    assert.equal(await ts.server.services.mfa.verifyTotp(user.id, await codeAt(secret, 1)), 'invalid', 'its codes no longer work');
    assert.equal((await call('DELETE', `/api/v1/me/mfa/${factorId}`, session.accessToken)).status, 404, 'already gone');
    assert.equal(await ts.server.services.db('mfa_factors').where({ id: factorId }).first(), undefined, 'the row (and its sealed secret) is gone');
  });

  it('a third-party client\'s token is refused (403) on every MFA route, and nothing changes', async () => {
    const user = await createUser(ts);
    const { accessToken } = await signedIn(user, false);
    const own = await withTotp();
    const attempts: Array<[string, string, unknown?]> = [
      ['GET', '/api/v1/me/mfa'],
      ['POST', '/api/v1/me/mfa/totp/enroll'],
      ['POST', '/api/v1/me/mfa/totp/confirm', { factorId: own.factorId, code: '123456' }],
      ['POST', '/api/v1/me/mfa/recovery-codes'],
      ['DELETE', `/api/v1/me/mfa/${own.factorId}`],
    ];
    for (const [method, path, body] of attempts) {
      const res = await call(method, path, accessToken, body);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body!.error, 'IDENT_FORBIDDEN');
    }
    assert.equal(await ts.server.services.db('mfa_factors').where({ user_id: user.id }).first(), undefined, 'nothing enrolled');
    assert.equal((await call('GET', '/api/v1/me', accessToken)).status, 200, 'the token still reads /me');
  });

  it('factor changes end the other sessions (this one stays), record events and send a mail; so does removal', async () => {
    const user = await createUser(ts);
    const here = await signedIn(user);
    const elsewhere = await signedIn(user);
    const { factorId, secret } = (await call('POST', '/api/v1/me/mfa/totp/enroll', here.accessToken)).body as { factorId: string; secret: string };
    assert.equal((await call('GET', '/api/v1/me', elsewhere.accessToken)).status, 200, 'starting an enrollment changes nothing yet');
    assert.equal((await call('POST', '/api/v1/me/mfa/totp/confirm', here.accessToken, { factorId, code: await codeAt(secret) })).status, 200);

    assert.equal((await call('GET', '/api/v1/me', here.accessToken)).status, 200, 'the current session keeps working');
    assert.ok(await oidc.refreshTokenGrant(here.config, here.tokens.refresh_token!), 'and its refresh token');
    assert.equal((await call('GET', '/api/v1/me', elsewhere.accessToken)).status, 401, 'the other session\'s token is revoked');
    await rejectsWithOAuthError(oidc.refreshTokenGrant(elsewhere.config, elsewhere.tokens.refresh_token!), 'invalid_grant');

    const added = await mailbox.next(user.email, /^A sign-in step was added to your account$/);
    assert.match(added.text, /An authenticator app was added to your account/);
    assert.ok(!added.raw.includes(secret), 'no secret in the mail');
    const enrolled = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.mfa_enrolled' });
    assert.equal(enrolled.length, 1);
    assert.equal(enrolled[0].payload.factor.id, factorId);
    assert.ok(!JSON.stringify(enrolled).includes(secret), 'no secret in the event');

    // Recovery codes are a factor change too.
    const third = await signedIn(user);
    assert.equal((await call('POST', '/api/v1/me/mfa/recovery-codes', here.accessToken)).status, 201);
    assert.equal((await call('GET', '/api/v1/me', third.accessToken)).status, 401);
    const codesMail = await mailbox.next(user.email, /^A sign-in step was added to your account$/);
    assert.match(codesMail.text, /Recovery codes were made/);

    const fourth = await signedIn(user);
    assert.equal((await call('DELETE', `/api/v1/me/mfa/${factorId}`, here.accessToken)).status, 204);
    assert.equal((await call('GET', '/api/v1/me', fourth.accessToken)).status, 401, 'removal ends the other sessions');
    assert.equal((await call('GET', '/api/v1/me', here.accessToken)).status, 200);
    const removedMail = await mailbox.next(user.email, /^A sign-in step was removed from your account$/);
    assert.match(removedMail.text, /The authenticator app was removed/);
    const removed = await ts.server.services.db('events').where({ subject_id: user.id, type: 'user.mfa_removed' });
    assert.deepEqual(removed.map((e) => e.payload.factor.id), [factorId]);
  });

  it('mails follow the user\'s language', async () => {
    const user = await createUser(ts, undefined, { locale: 'vi' });
    const { accessToken } = await signedIn(user);
    assert.equal((await call('POST', '/api/v1/me/mfa/recovery-codes', accessToken)).status, 201);
    const mail = await mailbox.next(user.email, /^Một bước đăng nhập đã được thêm vào tài khoản của bạn$/);
    assert.match(mail.text, /Các mã khôi phục đã được tạo/);
    assert.match(mail.html, /Đặt lại mật khẩu/);
  });

  it('the OpenAPI document describes the MFA routes, each first-party only', async () => {
    const doc = (await (await fetch(new URL('/api/v1/openapi.json', ts.issuer))).json()) as { paths: Record<string, Record<string, unknown>> };
    for (const [path, method] of [
      ['/api/v1/me/mfa', 'get'],
      ['/api/v1/me/mfa/totp/enroll', 'post'],
      ['/api/v1/me/mfa/totp/confirm', 'post'],
      ['/api/v1/me/mfa/recovery-codes', 'post'],
      ['/api/v1/me/mfa/{factorId}', 'delete'],
    ] as const) {
      assert.equal((doc.paths[path]?.[method] as Record<string, unknown> | undefined)?.['x-first-party-only'], true, `${method} ${path}, first-party only`);
    }
  });
});
