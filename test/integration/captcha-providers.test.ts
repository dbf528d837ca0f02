import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { HttpBrowser, formField } from '../helpers/browser-http.ts';
import { waitFor } from '../helpers/mailbox.ts';
import { uniqueEmail } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const SECRET = 'turnstile-secret-for-tests';

/** Plays Cloudflare's siteverify: only `good-token` with our secret succeeds. */
async function startSiteverify() {
  const seen: URLSearchParams[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const form = new URLSearchParams(raw);
      seen.push(form);
      const success = form.get('secret') === SECRET && form.get('response') === 'good-token';
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ success, 'error-codes': success ? [] : ['invalid-input-response'] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/siteverify`, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe('registration with a third-party CAPTCHA (Turnstile)', () => {
  let ts: TestServer;
  let siteverify: Awaited<ReturnType<typeof startSiteverify>>;
  before(async () => {
    siteverify = await startSiteverify();
    ts = await startTestServer({
      CAPTCHA_PROVIDER: 'turnstile',
      CAPTCHA_SITE_KEY: 'site-key-for-tests',
      CAPTCHA_SECRET_KEY: SECRET,
      CAPTCHA_VERIFY_URL: siteverify.url,
    });
  });
  after(async () => {
    await stopAndDestroy(ts);
    await siteverify.close();
  });

  const register = (captcha: string, email: string) =>
    fetch(new URL('/api/v1/auth/register', ts.issuer), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: 'amber canyon whistle 5521', captcha }),
    });

  it('the API verifies the token with the vendor: a good one registers, a bad one changes nothing', async () => {
    const bad = uniqueEmail('bad');
    const refused = await register('forged-token', bad);
    assert.equal(refused.status, 400);
    assert.equal(((await refused.json()) as { error: string }).error, 'IDENT_CAPTCHA_INVALID');
    assert.equal(await ts.server.services.repos.users.findByEmail('default', bad), undefined);

    const good = uniqueEmail('good');
    assert.equal((await register('good-token', good)).status, 202);
    // The user is written after the answer.
    assert.ok(await waitFor('the new user', () => ts.server.services.repos.users.findByEmail('default', good)));
    const last = siteverify.seen.at(-1)!;
    assert.equal(last.get('secret'), SECRET);
    assert.equal(last.get('remoteip'), '127.0.0.1');
  });

  it('there is no ALTCHA challenge to fetch', async () => {
    const res = await fetch(new URL('/api/v1/auth/captcha', ts.issuer));
    assert.equal(res.status, 404);
  });

  it("the register page loads the vendor's widget, and only that page's policy allows its origin", async () => {
    const browser = new HttpBrowser();
    const page = await browser.request(new URL('/register', ts.issuer));
    const html = await page.text();
    assert.match(html, /class="cf-turnstile" data-sitekey="site-key-for-tests"/);
    const csp = page.headers.get('content-security-policy')!;
    assert.match(csp, /script-src 'self' https:\/\/challenges\.cloudflare\.com/);
    assert.match(csp, /frame-src https:\/\/challenges\.cloudflare\.com/);
    assert.match(csp, /default-src 'none'/);
    const other = await fetch(new URL('/forgot-password', ts.issuer));
    assert.doesNotMatch(other.headers.get('content-security-policy')!, /cloudflare/);

    // The form posts the widget's own field name.
    const email = uniqueEmail('page');
    const res = await browser.postForm(new URL('/register', ts.issuer), {
      csrf: formField(html, 'csrf')!,
      email,
      password: 'amber canyon whistle 5521',
      'cf-turnstile-response': 'good-token',
    });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /autocomplete="one-time-code"/);
    assert.ok(await waitFor('the new user', () => ts.server.services.repos.users.findByEmail('default', email)));
  });
});
