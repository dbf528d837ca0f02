import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { Eta } from 'eta';
import Koa from 'koa';
import type { Browser } from 'playwright-core';
import { captchaAssetRoutes } from '../../src/http/captcha-assets.ts';
import { securityHeaders } from '../../src/http/middleware/security-headers.ts';
import { requestSteps } from '../../src/http/middleware/request-steps.ts';
import { createCaptcha, type Captcha } from '../../src/infra/captcha.ts';
import { randomToken } from '../../src/infra/crypto.ts';
import type { EphemeralStore } from '../../src/infra/ephemeral/index.ts';
import { MemoryStore } from '../../src/infra/ephemeral/memory.ts';
import { projectRoot } from '../../src/infra/paths.ts';
import { launchChromium, skipWithoutChromium } from '../helpers/chromium.ts';
import { waitFor } from '../helpers/wait.ts';


// A registration-like page: the partial inside a form, as the real page includes it.
const PAGE = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Register</title><link rel="stylesheet" href="/assets/app.css"></head>
<body>
<form method="post" action="/register">
  <label for="email">Email</label>
  <input id="email" name="email" type="email" required>
  <%~ include('partials/captcha', it.captcha) %>
  <button type="submit">Create account</button>
</form>
</body>
</html>`;

/**
 * A tiny app with exactly the production pieces the widget touches: our security headers (the
 * strict CSP), the asset router, the challenge endpoint and the partial. CSP reports are sent to
 * /csp-report as well, so violations inside the worker are caught, not only the page's console.
 */
async function startApp(captcha: Captcha) {
  const eta = new Eta({ views: path.join(projectRoot(), 'views'), autoEscape: true });
  const submissions: Array<{ captcha: unknown; accepted: boolean }> = [];
  const cspReports: unknown[] = [];
  const app = new Koa();
  app.use(requestSteps(securityHeaders()));
  app.use(async (ctx, next) => {
    await next();
    const csp = ctx.response.get('Content-Security-Policy');
    if (csp) ctx.set('Content-Security-Policy', `${csp}; report-uri /csp-report`);
  });
  app.use(captchaAssetRoutes().routes());
  const router = new Router();
  router.get('/assets/app.css', (ctx) => {
    ctx.type = 'text/css';
    ctx.body = 'body { font-family: sans-serif; }';
  });
  // The browser asks for it on its own; a 404 would show up as a console error.
  router.get('/favicon.ico', (ctx) => {
    ctx.status = 204;
  });
  router.get('/api/v1/auth/captcha', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await captcha.challenge();
  });
  router.get('/register', (ctx) => {
    ctx.type = 'html';
    ctx.body = eta.renderString(PAGE, { captcha: captcha.widget });
  });
  router.post('/register', bodyParser({ enableTypes: ['form'] }), async (ctx) => {
    const body = ctx.request.body as Record<string, unknown>;
    const accepted = await captcha.verify(body.captcha, ctx.ip);
    submissions.push({ captcha: body.captcha, accepted });
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>Result</title><p id="result">${accepted ? 'accepted' : 'refused'}</p>`;
  });
  router.post('/csp-report', bodyParser({ enableTypes: ['json'], extendTypes: { json: ['application/csp-report'] } }), (ctx) => {
    cspReports.push(ctx.request.body);
    ctx.status = 204;
  });
  app.use(router.routes());

  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    // 127.0.0.1 is a secure context for Chromium, which the widget requires (crypto.subtle).
    origin: `http://127.0.0.1:${port}`,
    submissions,
    cspReports,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('the ALTCHA widget in a real browser', { skip: skipWithoutChromium }, () => {
  let store: EphemeralStore;
  let captcha: Captcha;
  let app: Awaited<ReturnType<typeof startApp>>;
  let browser: Browser;

  before(async () => {
    store = new MemoryStore();
    captcha = createCaptcha({ provider: 'altcha', hmacKey: randomToken(), ephemeral: store, maxNumber: 1000 });
    [app, browser] = await Promise.all([
      startApp(captcha),
      launchChromium(),
    ]);
  });
  after(async () => {
    await browser?.close();
    await app?.close();
    await store?.close();
  });

  it('solves the challenge under our CSP and the server accepts the payload once', async () => {
    const context = await browser.newContext();
    context.setDefaultTimeout(20_000);
    const page = await context.newPage();
    const cspViolations: string[] = [];
    const errors: string[] = [];
    const workers: string[] = [];
    page.on('console', (msg) => {
      if (/Content Security Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
      if (msg.type() === 'error') errors.push(msg.text());
    });
    page.on('pageerror', (err) => errors.push(String(err)));
    const failed: string[] = [];
    page.on('response', (res) => {
      if (res.status() >= 400) failed.push(`${res.status()} ${res.url()}`);
    });
    page.on('worker', (worker) => {
      workers.push(worker.url());
      worker.on('console', (msg) => {
        if (/Content Security Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
      });
    });
    try {
      const response = await page.goto(`${app.origin}/register`);
      assert.equal(response?.status(), 200);
      assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'self'/);

      // auto="onload": the widget fetches a challenge and solves it without a click.
      const payload = page.locator('form input[type="hidden"][name="captcha"]');
      await page.waitForFunction(() => {
        const input = document.querySelector<HTMLInputElement>('form input[type="hidden"][name="captcha"]');
        return Boolean(input?.value);
      });
      const solved = await payload.inputValue();
      assert.ok(workers.some((u) => u.endsWith('/assets/altcha-worker-sha.js')), `solved in our worker: ${workers.join(', ')}`);

      await page.locator('#email').fill('someone@example.test');
      await Promise.all([page.waitForURL(`${app.origin}/register`), page.getByRole('button', { name: 'Create account' }).click()]);
      assert.equal(await page.locator('#result').textContent(), 'accepted');
      assert.deepEqual(app.submissions, [{ captcha: solved, accepted: true }]);

      // The same payload sent again (a replayed form post) is refused.
      assert.equal(await captcha.verify(solved), false);

      // Reports are sent asynchronously by the browser: a violation made on purpose now (an image
      // from an origin the policy does not allow) is reported after any earlier one, so once its
      // report is in, a late report would be too.
      const SENTINEL = 'csp-sentinel.invalid';
      await page.evaluate((host) => {
        const img = document.createElement('img');
        img.src = `https://${host}/flush.png`;
        document.body.append(img);
      }, SENTINEL);
      await waitFor('the sentinel CSP report', () => app.cspReports.some((r) => JSON.stringify(r).includes(SENTINEL)), 20_000);
      const notSentinel = (x: unknown) => !JSON.stringify(x).includes(SENTINEL);
      assert.deepEqual(cspViolations.filter(notSentinel), [], 'no CSP violation in the console');
      assert.deepEqual(app.cspReports.filter(notSentinel), [], 'no CSP violation reported');
      assert.deepEqual(failed, [], 'every request the page made succeeded');
      assert.deepEqual(errors.filter(notSentinel), [], 'no script errors');
    } finally {
      await context.close();
    }
  });

  it('serves the widget files with a public cache lifetime and the right types', async () => {
    for (const [file, type] of [
      ['altcha.js', /^text\/javascript/],
      ['altcha-widget.js', /^text\/javascript/],
      ['altcha-i18n-vi.js', /^text\/javascript/],
      ['altcha-worker-sha.js', /^text\/javascript/],
      ['altcha.css', /^text\/css/],
    ] as const) {
      const res = await fetch(`${app.origin}/assets/${file}`);
      assert.equal(res.status, 200, file);
      assert.match(res.headers.get('content-type') ?? '', type, file);
      assert.equal(res.headers.get('cache-control'), 'public, max-age=3600', file);
      assert.ok((await res.arrayBuffer()).byteLength > 100, file);
    }
  });
});
