import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as oidc from 'openid-client';
import type { OutboxRow } from '../../src/repos/outbox.ts';
import { HttpBrowser, formAction, formField } from '../helpers/browser-http.ts';
import { startAuthorization as startPending, type PendingAuthorization } from '../helpers/authorization.ts';
import { codeAndLink, fastMailSettings, mailSettled, startMailbox, type Mailbox } from '../helpers/mailbox.ts';
import { createUser, registerClient, submitLogin, uniqueEmail, REDIRECT_URI, type Registered } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

// Sign-in by emailed link, end to end: the magic-link form of the login page of a pending
// authorization, the mail, the link opened in the same browser (the authorization completes and
// openid-client redeems the code), and the links that must not sign anyone in: used twice, opened
// in another browser, or brought to another pending authorization.

const SUBJECT = /^Your sign-in link$/;
const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);
const title = (html: string) => /<title>([^<]*)<\/title>/.exec(html)?.[1];

/** A pending authorization in its own browser, up to the login page. */
const startAuthorization = (ts: TestServer, client: Registered, browser = new HttpBrowser()) => startPending(ts, client, { browser });
type Flow = PendingAuthorization;

/** Submits the login page's magic-link form. */
async function askForLink(flow: Flow, email: string) {
  const action = formAction(flow.loginHtml, '/magic-link');
  assert.equal(action, `/interaction/${flow.uid}/magic-link`, 'the login page has the magic-link form');
  const res = await flow.browser.postForm(new URL(action!, flow.loginUrl), { csrf: formField(flow.loginHtml, 'csrf')!, email });
  return { status: res.status, html: await res.text() };
}

/** Opens `link` in `browser`; when it completes the authorization, follows to the callback and redeems the code. */
async function openLink(flow: Flow, browser: HttpBrowser, link: string) {
  const res = await browser.request(link);
  if (res.status !== 303) return { status: res.status, html: await res.text(), location: res.headers.get('location') };
  const step = await browser.follow(new URL(res.headers.get('location')!, link), {}, isCallback);
  assert.ok(isCallback(step.url), `the flow ends at the redirect_uri, not ${step.url.href}`);
  const tokens = await flow.request.redeem(step.url);
  return { status: 303, html: '', location: step.url.href, tokens };
}

describe('magic links', () => {
  let ts: TestServer;
  let mailbox: Mailbox;
  let client: Registered;

  before(async () => {
    mailbox = await startMailbox();
    ts = await startTestServer({
      ...fastMailSettings(mailbox.url),
      AUTH_API_RATE_LIMIT_PER_IP: '10000',
    });
    client = await registerClient(ts, { client_name: 'Link Reader' }, true);
  });
  after(async () => {
    await stopAndDestroy(ts);
    await mailbox.stop();
  });

  it('known and unknown addresses get the same page; only the known one gets a link, which completes the sign-in in this browser, once', async () => {
    // Not yet verified: opening the link proves the address too.
    const user = await createUser(ts, 'a password 123 never typed', { emailVerified: false });
    const flow = await startAuthorization(ts, client);
    const asked = await askForLink(flow, user.email);
    assert.equal(asked.status, 200);
    assert.equal(title(asked.html), 'Check your email');

    const unknown = uniqueEmail('nobody');
    const otherFlow = await startAuthorization(ts, client);
    const askedUnknown = await askForLink(otherFlow, unknown);
    assert.equal(askedUnknown.status, asked.status);
    assert.equal(askedUnknown.html.replaceAll(unknown, 'EMAIL'), asked.html.replaceAll(user.email, 'EMAIL'), 'the same page for both');

    const mail = await mailbox.next(user.email, SUBJECT);
    const { link } = codeAndLink(mail, ts.issuer);
    assert.ok(link?.startsWith(`${ts.issuer}/interaction/${flow.uid}/magic-link?token=`), link);
    const token = new URL(link!).searchParams.get('token')!;
    assert.ok(token.length >= 43, 'a 256-bit token');
    await mailSettled(ts);
    assert.deepEqual(mailbox.all(unknown), []);
    assert.deepEqual(await ts.server.services.db<OutboxRow>('outbox').where({ recipient: unknown }), []);

    const done = await openLink(flow, flow.browser, link!);
    assert.equal(done.status, 303, `the link completes the sign-in: ${done.html.slice(0, 300)}`);
    const claims = done.tokens!.claims()!;
    assert.equal(claims.sub, user.id);
    const info = await oidc.fetchUserInfo(flow.config, done.tokens!.access_token, user.id);
    assert.equal(info.email, user.email);
    assert.equal(info.email_verified, true);
    assert.equal((await ts.server.services.repos.users.findByEmail('default', user.email))!.email_verified, true);

    // Opened again: no second sign-in.
    const again = await openLink(flow, flow.browser, link!);
    assert.equal(again.status, 400);
    assert.equal(again.location, null);
    assert.equal(again.tokens, undefined);

    const events = await ts.server.services.db('events').where({ subject_id: user.id }).orderBy('occurred_at');
    const signedIn = events.filter((e) => e.type === 'user.signed_in');
    assert.equal(signedIn.length, 1, 'one sign-in');
    const payload = typeof signedIn[0]!.payload === 'string' ? JSON.parse(signedIn[0]!.payload) : signedIn[0]!.payload;
    assert.deepEqual(payload.amr, ['otp']);
    assert.deepEqual({ type: signedIn[0]!.actor_type, id: signedIn[0]!.actor_id }, { type: 'user', id: user.id });
    assert.equal(payload.clientId, client.clientId);
    assert.ok(events.some((e) => e.type === 'user.email_verified'));
    assert.ok(!JSON.stringify(events).includes(token), 'the token is in no event');

    // What the pages said.
    assert.match(asked.html, new RegExp(`If ${user.email.replaceAll('.', '\\.')} has an account, we sent it a sign-in link`));
    assert.match(again.html, /invalid, expired or already used, or was opened in another browser/);
  });

  it('a link opened in another browser (no interaction cookie) fails without signing in, and without using the link up', async () => {
    const user = await createUser(ts);
    const flow = await startAuthorization(ts, client);
    assert.equal((await askForLink(flow, user.email)).status, 200);
    const { link } = codeAndLink(await mailbox.next(user.email, SUBJECT), ts.issuer);

    const stranger = new HttpBrowser();
    const elsewhere = await openLink(flow, stranger, link!);
    assert.equal(elsewhere.status, 400);
    assert.equal(elsewhere.location, null, 'no redirect: nothing signed in');
    assert.equal(stranger.cookies.get(new URL(ts.issuer).host)?.has('_session') ?? false, false, 'no session in the other browser');

    // The browser that asked for it still can.
    const done = await openLink(flow, flow.browser, link!);
    assert.equal(done.status, 303);
    assert.equal(done.tokens!.claims()!.sub, user.id);
    assert.match(elsewhere.html, /opened in another browser/);
  });

  it('a link asked for in authorization A does not complete authorization B', async () => {
    const user = await createUser(ts);
    const flowA = await startAuthorization(ts, client);
    assert.equal((await askForLink(flowA, user.email)).status, 200);
    const { link } = codeAndLink(await mailbox.next(user.email, SUBJECT), ts.issuer);
    const token = new URL(link!).searchParams.get('token')!;

    // B is pending in another browser; A's token brought to B's own path and cookie.
    const flowB = await startAuthorization(ts, client);
    const carried = new URL(`/interaction/${flowB.uid}/magic-link`, ts.issuer);
    carried.searchParams.set('token', token);
    const onB = await openLink(flowB, flowB.browser, carried.href);
    assert.equal(onB.status, 400, 'the link is bound to A');
    assert.equal(onB.location, null);
    // A's link as is, in B's browser: B's interaction cookie is not A's.
    const asIs = await openLink(flowB, flowB.browser, link!);
    assert.equal(asIs.status, 400);
    assert.equal(asIs.location, null);

    // B is still pending and untouched: it completes with the password.
    const bPage = await flowB.browser.request(flowB.loginUrl);
    assert.equal(bPage.status, 200);
    const bLogin = await submitLogin(flowB.browser, flowB.loginUrl, await bPage.text(), user.email, user.password);
    assert.equal(bLogin.status, 303);
    const cb = await flowB.browser.follow(new URL(bLogin.headers.get('location')!, flowB.loginUrl), {}, isCallback);
    const tokensB = await flowB.request.redeem(cb.url);
    assert.equal(tokensB.claims()!.sub, user.id);

    // And A's link still completes A.
    const done = await openLink(flowA, flowA.browser, link!);
    assert.equal(done.status, 303);
    assert.equal(done.tokens!.claims()!.sub, user.id);
  });
});
