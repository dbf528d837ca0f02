import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import { en } from '../../src/i18n/en.ts';
import { inputTag, local, openLoginPage, postLogin, type LoginAnswer } from '../helpers/login-page.ts';
import { waitFor } from '../helpers/mailbox.ts';
import { createUser, registerClient, rpConfig, signIn, uniqueEmail, REDIRECT_URI } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const TRY_LATER = /try again later/i;

/** Status and alert of an answer: what a visitor can observe of a failed sign-in. */
const seen = (a: LoginAnswer) => ({ status: a.status, alert: a.alert });

describe('sign-in security', () => {
  // Lockout after 3 failures for 2 s; the per-IP limit is out of the way (1000) on this server.
  let ts: TestServer;
  // Per-IP limit of 5 a minute; lockout out of the way (default 10, and unknown emails vary).
  let limited: TestServer;
  let clientId: string;
  let limitedClientId: string;

  before(async () => {
    [ts, limited] = await Promise.all([
      startTestServer({ LOCKOUT_THRESHOLD: '3', LOCKOUT_DURATION_SECONDS: '2' }),
      startTestServer({ LOGIN_RATE_LIMIT_PER_IP: '5' }),
    ]);
    clientId = (await registerClient(ts, { token_endpoint_auth_method: 'none' }, true)).clientId;
    limitedClientId = (await registerClient(limited, { token_endpoint_auth_method: 'none' }, true)).clientId;
  });
  after(() => Promise.all([stopAndDestroy(ts), stopAndDestroy(limited)]));

  it('answers a wrong password and an unknown email with the same status and message', async () => {
    const user = await createUser(ts);
    const wrongPassword = await postLogin(await openLoginPage(ts, clientId), { email: user.email, password: 'not the password' });
    const unknownEmail = await postLogin(await openLoginPage(ts, clientId), { email: uniqueEmail('nobody'), password: user.password });
    assert.equal(wrongPassword.status, 401);
    assert.equal(wrongPassword.alert, en['error.invalid_credentials']);
    assert.deepEqual(seen(unknownEmail), seen(wrongPassword));
    // Neither signed anyone in: the form is shown again.
    assert.equal(wrongPassword.location, null);
    assert.equal(unknownEmail.location, null);
    assert.ok(inputTag(unknownEmail.html, 'password'));
  });

  it('locks an account after LOCKOUT_THRESHOLD failures, refuses even the right password, and unlocks after the duration', async () => {
    const user = await createUser(ts);
    const page = await openLoginPage(ts, clientId);
    const answers: LoginAnswer[] = [];
    for (let i = 0; i < 3; i++) answers.push(await postLogin(page, { email: user.email, password: `wrong-${i}` }));
    assert.deepEqual(answers.map((a) => a.status), [401, 401, 429]);
    assert.equal(answers[0]!.alert, en['error.invalid_credentials']);
    assert.equal(answers[2]!.alert, en['error.locked']);
    assert.match(answers[2]!.alert!, TRY_LATER);

    // The account's own record is written after the answer.
    const lockedRow = await waitFor('locked_until set', async () => {
      const row = await ts.server.services.repos.users.findById(user.id);
      return row?.locked_until ? row : undefined;
    });
    assert.ok(lockedRow.locked_until && lockedRow.locked_until.getTime() > Date.now(), 'locked_until is in the future');

    const rightButLocked = await postLogin(page, { email: user.email, password: user.password });
    assert.equal(rightButLocked.status, 429);
    assert.equal(rightButLocked.location, null, 'a locked account is not signed in');
    assert.match(rightButLocked.alert ?? '', TRY_LATER);

    // Once LOCKOUT_DURATION_SECONDS (2 s) have passed, the right password works again.
    await sleep(Math.max(0, lockedRow.locked_until.getTime() - Date.now()) + 150);
    const unlocked = await postLogin(page, { email: user.email, password: user.password });
    assert.equal(unlocked.status, 303, `expected a redirect after the lock ran out, got ${unlocked.status} ${unlocked.alert}`);
    const callback = await page.browser.follow(local(ts, unlocked.location!, page.action), {}, (u) => u.href.startsWith(REDIRECT_URI));
    assert.ok(callback.url.href.startsWith(REDIRECT_URI));
    assert.ok(callback.url.searchParams.get('code'), 'an authorization code is issued');
    const row = await ts.server.services.repos.users.findById(user.id);
    assert.equal(row?.failed_attempts, 0, 'a successful sign-in resets the failure count');
    assert.ok(row?.last_login_at);
  });

  it('shows the same "try later" lock for unknown emails, so the lock does not reveal which accounts exist', async () => {
    const user = await createUser(ts);
    const ghost = uniqueEmail('ghost');
    const known = await openLoginPage(ts, clientId);
    const unknown = await openLoginPage(ts, clientId);
    const knownSeen = [];
    const unknownSeen = [];
    for (let i = 0; i < 4; i++) {
      knownSeen.push(seen(await postLogin(known, { email: user.email, password: `wrong-${i}` })));
      unknownSeen.push(seen(await postLogin(unknown, { email: ghost, password: `wrong-${i}` })));
    }
    assert.deepEqual(unknownSeen.map((s) => s.status), [401, 401, 429, 429]);
    assert.match(unknownSeen[2]!.alert ?? '', TRY_LATER);
    assert.deepEqual(unknownSeen, knownSeen);
    // The lock of an unknown email is keyed case-insensitively, as accounts are.
    const shouting = seen(await postLogin(unknown, { email: ghost.toUpperCase(), password: 'again' }));
    assert.deepEqual(shouting, knownSeen[3]);
  });

  it('limits sign-in attempts per client address (LOGIN_RATE_LIMIT_PER_IP) with 429 and a "try later" message', async () => {
    const user = await createUser(limited);
    const page = await openLoginPage(limited, limitedClientId);
    for (let i = 0; i < 5; i++) {
      const a = await postLogin(page, { email: uniqueEmail('probe'), password: 'guess' });
      assert.equal(a.status, 401, `attempt ${i + 1} is within the limit`);
    }
    const over = await postLogin(page, { email: uniqueEmail('probe'), password: 'guess' });
    assert.equal(over.status, 429);
    assert.equal(over.alert, en['error.rate_limited']);
    assert.match(over.alert!, TRY_LATER);
    // The limit is on the address, not the account: the right password from here is refused too,
    // and from a fresh browser (new cookies, new interaction) as well.
    const right = await postLogin(page, { email: user.email, password: user.password });
    assert.equal(right.status, 429);
    assert.equal(right.location, null);
    const fresh = await postLogin(await openLoginPage(limited, limitedClientId), { email: user.email, password: user.password });
    assert.equal(fresh.status, 429);
    assert.match(fresh.alert ?? '', TRY_LATER);
  });

  it('refuses a suspended user and stops the refresh token issued before the suspension', async () => {
    const user = await createUser(ts);
    const client = await registerClient(ts, { grant_types: ['authorization_code', 'refresh_token'] }, true);
    const config = await rpConfig(ts, client);
    const { tokens } = await signIn(ts, config, user, { scope: 'openid offline_access', prompt: 'consent' });
    assert.ok(tokens.refresh_token, 'a refresh token is issued with offline_access');
    // The refresh token works while the account is active (and rotates).
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
    assert.equal(refreshed.claims()?.sub, user.id);
    assert.ok(refreshed.refresh_token);

    await ts.server.services.repos.users.setStatus(user.id, 'suspended');

    await assert.rejects(oidc.refreshTokenGrant(config, refreshed.refresh_token), (err: oidc.ResponseBodyError) => {
      assert.equal(err.error, 'invalid_grant');
      return true;
    });

    const page = await openLoginPage(ts, clientId);
    const refused = await postLogin(page, { email: user.email, password: user.password });
    assert.equal(refused.status, 403);
    assert.equal(refused.location, null, 'a suspended user is not signed in');
    assert.equal(refused.alert, en['error.inactive']);
    // Without the password nobody learns that the account is suspended.
    const guess = await postLogin(page, { email: user.email, password: 'a guess' });
    assert.equal(guess.status, 401);
    assert.equal(guess.alert, en['error.invalid_credentials']);
  });

  it('issues no code to an account suspended between its password and the resumed authorization', async () => {
    const user = await createUser(ts);
    const page = await openLoginPage(ts, clientId);
    const proven = await postLogin(page, { email: user.email, password: user.password });
    assert.equal(proven.status, 303, `the password is accepted: ${proven.status} ${proven.alert}`);
    await ts.server.services.repos.users.setStatus(user.id, 'suspended');
    // The resumed authorization reads the account with its interaction (oidc/lookup-batcher.ts), in
    // that same request: the suspension is seen.
    const resumed = await page.browser.follow(local(ts, proven.location!, page.action), {}, (u) => u.href.startsWith(REDIRECT_URI));
    assert.equal(resumed.url.searchParams.get('code'), null, 'no authorization code for a suspended account');
    if (resumed.url.href.startsWith(REDIRECT_URI)) assert.ok(resumed.url.searchParams.get('error'), 'the client hears an error');
    else assert.match(await resumed.res.text(), /name="password"/, 'or the password is asked for again');
  });

  it('refuses a login POST without the right CSRF token with 403 and signs nobody in', async () => {
    const user = await createUser(ts);
    const page = await openLoginPage(ts, clientId);
    const other = await openLoginPage(ts, clientId);
    const attempts = {
      missing: await postLogin(page, { csrf: undefined, email: user.email, password: user.password }),
      empty: await postLogin(page, { csrf: '', email: user.email, password: user.password }),
      forged: await postLogin(page, { csrf: 'A'.repeat(43), email: user.email, password: user.password }),
      // A valid token, but for another interaction.
      foreign: await postLogin(page, { csrf: other.csrf, email: user.email, password: user.password }),
    };
    for (const [name, a] of Object.entries(attempts)) {
      assert.equal(a.status, 403, `${name} CSRF token: 403 expected, got ${a.status}`);
      assert.equal(a.location, null, `${name} CSRF token: no redirect`);
      assert.equal(a.res.headers.getSetCookie().some((c) => c.startsWith('_session=')), false, `${name}: no session cookie`);
    }
    assert.equal((await ts.server.services.repos.users.findById(user.id))?.last_login_at, null, 'no sign-in was recorded');

    // The browser has no session: prompt=none answers login_required.
    const verifier = oidc.randomPKCECodeVerifier();
    const probe = new URL('/auth', ts.issuer);
    probe.search = new URLSearchParams({
      client_id: clientId,
      response_type: 'code',
      scope: 'openid',
      redirect_uri: REDIRECT_URI,
      prompt: 'none',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    }).toString();
    const none = await page.browser.request(probe);
    assert.equal(new URL(none.headers.get('location')!).searchParams.get('error'), 'login_required');

    // The same form with its own token signs in, so the 403s were about the token only.
    const ok = await postLogin(page, { email: user.email, password: user.password });
    assert.equal(ok.status, 303);
  });

  it('marks the login fields for password managers (autocomplete username / current-password)', async () => {
    const page = await openLoginPage(ts, clientId);
    const email = inputTag(page.html, 'email');
    const password = inputTag(page.html, 'password');
    assert.ok(email && password, 'email and password inputs expected');
    assert.match(email, /\bautocomplete="username"/);
    assert.match(password, /\bautocomplete="current-password"/);
    assert.match(password, /\btype="password"/);
    // Each field has a label, which is also how the browser test finds them.
    assert.match(page.html, /<label for="email">/);
    assert.match(page.html, /<label for="password">/);
    assert.match(page.html, /<form method="post" action="\/interaction\/[^"]+\/login"/);
  });

  it('stores passwords as salted argon2id hashes with the configured cost', async () => {
    const password = 'the same password for both';
    const a = await createUser(ts, password);
    const b = await createUser(ts, password);
    const hashA = (await ts.server.services.repos.users.findById(a.id))?.password_hash;
    const hashB = (await ts.server.services.repos.users.findById(b.id))?.password_hash;
    assert.ok(hashA && hashB);
    assert.ok(hashA.startsWith('$argon2id$'), `argon2id expected, got ${hashA.slice(0, 12)}`);
    // ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, ARGON2_PARALLELISM=1 in the test settings.
    const params = Object.fromEntries(hashA.split('$')[3]!.split(',').map((kv) => kv.split('=')));
    assert.deepEqual(params, { m: '1024', t: '1', p: '1' });
    assert.ok(!hashA.includes(password));
    assert.notEqual(hashA, hashB, 'each hash has its own salt');
  });

});
