import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { registerClient } from '../helpers/rp.ts';
import { startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';

const SPA = 'http://localhost:5173';

describe('CORS on the provider endpoints', () => {
  let ts: TestServer;
  let spa: { clientId: string };
  let web: { clientId: string; clientSecret?: string | undefined };
  before(async () => {
    ts = await startTestServer();
    spa = await registerClient(ts, { token_endpoint_auth_method: 'none', redirect_uris: [`${SPA}/callback`] });
    web = await registerClient(ts, { redirect_uris: [`${SPA}/callback`] });
  });
  after(() => stopAndDestroy(ts));

  const tokenRequest = (origin: string, body: Record<string, string>, auth?: string) =>
    fetch(new URL('/token', ts.issuer), {
      method: 'POST',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}) },
      body: new URLSearchParams(body),
    });

  it('a public client is answered cross-origin from its redirect URIs\' origin only', async () => {
    const body = { grant_type: 'authorization_code', code: 'not-a-code', client_id: spa.clientId, code_verifier: 'x'.repeat(43), redirect_uri: `${SPA}/callback` };
    const own = await tokenRequest(SPA, body);
    assert.equal(own.headers.get('access-control-allow-origin'), SPA);
    assert.equal((await own.json()).error, 'invalid_grant', 'the request itself was judged');
    const other = await tokenRequest('https://evil.example', body);
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    assert.equal(other.status, 400);
  });

  it('a confidential client is never answered cross-origin (its secret does not belong in a browser)', async () => {
    const auth = `Basic ${Buffer.from(`${web.clientId}:${web.clientSecret}`).toString('base64')}`;
    const res = await tokenRequest(SPA, { grant_type: 'authorization_code', code: 'not-a-code', redirect_uri: `${SPA}/callback` }, auth);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    assert.equal(res.status, 400);
  });
});
