import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import Router from '@koa/router';
import Koa from 'koa';
import { ownRoutes } from '../../src/http/middleware/own-routes.ts';

/**
 * Our routers as one middleware that the provider's endpoint paths bypass; anything one of our
 * routes does answer still reaches it, and 405/501 answers are unchanged.
 */
describe('ownRoutes', () => {
  let server: http.Server;
  let base: string;
  before(async () => {
    const pages = new Router();
    pages.get('/page', (ctx) => {
      ctx.body = 'page';
    });
    // One of our routes on a path the provider also names: it must not be skipped.
    pages.post('/token/revocation', (ctx) => {
      ctx.body = 'ours';
    });
    const api = new Router({ prefix: '/api' });
    api.get('/things', (ctx) => {
      ctx.body = 'things';
    });
    const app = new Koa();
    app.use(ownRoutes([{ router: pages, allowedMethods: true }, { router: api, allowedMethods: true }], ['/token', '/token/revocation', '/me']));
    // Stands for the provider (on its paths only): says whether any router looked at the request.
    app.use((ctx) => {
      if (!['/token', '/me', '/elsewhere'].includes(ctx.path)) return;
      ctx.body = (ctx as { router?: unknown }).router ? 'provider after routers' : 'provider, routers skipped';
    });
    server = http.createServer(app.callback()).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(() => new Promise((resolve) => server.close(resolve)));

  const call = async (method: string, path: string) => {
    const res = await fetch(`${base}${path}`, { method });
    return { status: res.status, text: await res.text(), allow: res.headers.get('allow') };
  };

  it('a provider endpoint skips the routers', async () => {
    assert.deepEqual(await call('POST', '/token'), { status: 200, text: 'provider, routers skipped', allow: null });
    assert.equal((await call('GET', '/me')).text, 'provider, routers skipped');
  });

  it('our routes answer as before, in mount order, with their 405s', async () => {
    assert.equal((await call('GET', '/page')).text, 'page');
    assert.equal((await call('GET', '/api/things')).text, 'things');
    const wrongMethod = await call('POST', '/page');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.allow, 'HEAD, GET');
    assert.equal((await call('GET', '/elsewhere')).text, 'provider after routers');
  });

  it('a provider path one of our routes matches goes through the routers', async () => {
    assert.equal((await call('POST', '/token/revocation')).text, 'ours');
    assert.equal((await call('GET', '/token/revocation')).status, 405);
  });
});
