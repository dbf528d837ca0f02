import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import * as oidc from 'openid-client';
import { AdminApi, adminToken, startAdminServer } from '../helpers/admin.ts';
import { formAction, formField } from '../helpers/browser-http.ts';
import { createUser, rpConfig, signIn, POST_LOGOUT_URI, REDIRECT_URI } from '../helpers/rp.ts';
import { listenOn, portOf, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { sleep, waitFor } from '../helpers/wait.ts';

const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/** A relying party's back-channel logout endpoint: keeps each logout_token posted to it. */
async function startLogoutEndpoint() {
  const posts: Array<{ contentType: string; token: string | null }> = [];
  let answer = 200;
  const server = await listenOn(0);
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({
        contentType: String(req.headers['content-type']),
        token: new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('logout_token'),
      });
      res.statusCode = answer;
      res.end();
    });
  });
  return {
    posts,
    uri: `http://127.0.0.1:${portOf(server)}/backchannel-logout`,
    set answer(value: number) {
      answer = value;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('back-channel logout (OpenID Connect Back-Channel Logout 1.0)', () => {
  let ts: TestServer;
  let api: AdminApi;
  let endpoint: Awaited<ReturnType<typeof startLogoutEndpoint>>;
  let client: { clientId: string; clientSecret: string };
  let config: oidc.Configuration;
  let jwks: ReturnType<typeof createRemoteJWKSet>;

  before(async () => {
    ts = await startAdminServer({
      WEBHOOK_POLL_INTERVAL_MS: '50', WEBHOOK_RETRY_BASE_MS: '100', WEBHOOK_RETRY_MAX_MS: '300', WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
    });
    api = new AdminApi(ts, await adminToken(ts));
    endpoint = await startLogoutEndpoint();
    // Registered through the admin API, as an operator would.
    const res = await api.post('/clients', {
      redirect_uris: [REDIRECT_URI],
      post_logout_redirect_uris: [POST_LOGOUT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      first_party: true,
      backchannel_logout_uri: endpoint.uri,
      backchannel_logout_session_required: true,
    });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.backchannel_logout_uri, endpoint.uri);
    client = { clientId: res.body.client_id, clientSecret: res.body.client_secret };
    config = await rpConfig(ts, client);
    // Discovery says so (§2.1).
    assert.equal(config.serverMetadata().backchannel_logout_supported, true);
    assert.equal(config.serverMetadata().backchannel_logout_session_supported, true);
    jwks = createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri!));
  });
  after(async () => {
    await endpoint?.close();
    await stopAndDestroy(ts);
  });

  /** The relying party's check of a logout token (§2.6): signature, iss, aud, iat, events, sub/sid, no nonce. */
  async function verifyLogoutToken(token: string, audience = client.clientId): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, jwks, {
      issuer: config.serverMetadata().issuer,
      audience,
      maxTokenAge: '2 minutes',
    });
    assert.notEqual(decodeProtectedHeader(token).alg, 'none');
    assert.deepEqual(payload.events, { [LOGOUT_EVENT]: {} });
    assert.equal(payload.nonce, undefined, 'a logout token has no nonce');
    assert.equal(typeof payload.jti, 'string');
    assert.ok(payload.sub || payload.sid);
    return payload;
  }

  async function signedIn() {
    const user = await createUser(ts);
    const { tokens, browser } = await signIn(ts, config, user);
    const claims = tokens.claims()!;
    assert.equal(typeof claims.sid, 'string', 'ID tokens carry the session id');
    return { user, tokens, browser, sid: claims.sid as string };
  }

  const tokensFor = async (sid: string) => {
    const out: JWTPayload[] = [];
    for (const post of endpoint.posts) {
      if (!post.token) continue;
      const payload = await verifyLogoutToken(post.token);
      if (payload.sid === sid) out.push(payload);
    }
    return out;
  };

  it('RP-initiated logout: the relying party receives a logout token for the session and verifies it', async () => {
    const { user, tokens, browser, sid } = await signedIn();
    const page = await browser.request(oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI }));
    const html = await page.text();
    const confirm = await browser.postForm(new URL(formAction(html, '/session/end')!, ts.issuer), { xsrf: formField(html, 'xsrf')!, logout: 'yes' });
    assert.equal(confirm.status, 303);
    const [payload] = await waitFor('the logout token', async () => ((await tokensFor(sid)).length ? tokensFor(sid) : undefined));
    assert.equal(payload!.sub, user.id);
    assert.equal(payload!.sub, tokens.claims()!.sub);
    assert.equal(endpoint.posts.at(-1)!.contentType, 'application/x-www-form-urlencoded');
  });

  for (const [how, end] of [
    ['suspension by an operator', (id: string) => api.post(`/users/${id}/suspend`)],
    ['a new password set by an operator', (id: string) => api.patch(`/users/${id}`, { password: 'a fresh and long passphrase 42' })],
    ['logout-all', (id: string) => ts.server.services.selfService.logoutAll(id)],
    [
      'an operator signing the user out everywhere',
      async (id: string) => {
        const res = await api.post(`/users/${id}/logout`);
        assert.equal(res.status, 204);
        const [event] = await ts.server.services.db('events').where({ type: 'user.signed_out_everywhere', target_id: id });
        assert.deepEqual([event.actor_type, event.payload.by ?? JSON.parse(event.payload).by], ['client', 'admin']);
        assert.equal((await api.get(`/users/${id}`)).body.status, 'active', 'the account stays active');
      },
    ],
  ] as const) {
    it(`${how} ends the session and the relying party is told`, async () => {
      const { user, sid } = await signedIn();
      await end(user.id);
      const [payload] = await waitFor('the logout token', async () => ((await tokensFor(sid)).length ? tokensFor(sid) : undefined));
      assert.equal(payload!.sub, user.id);
    });
  }

  it('a relying party that is down is told once it is back (retried from the queue, a fresh token each attempt)', async () => {
    const { user, sid } = await signedIn();
    endpoint.answer = 503;
    const before = endpoint.posts.length;
    await api.post(`/users/${user.id}/suspend`);
    await waitFor('two refused attempts', () => endpoint.posts.length >= before + 2);
    endpoint.answer = 200;
    await sleep(800);
    const got = await tokensFor(sid);
    assert.ok(got.length >= 3, `attempts: ${got.length}`);
    assert.equal(new Set(got.map((p) => p.jti)).size, got.length, 'each attempt carries a token of its own');
    const rows = await ts.server.services.db('webhook_deliveries').where({ kind: 'backchannel_logout' }).whereRaw(`body::jsonb->>'sid' = ?`, [sid]);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].status, 'succeeded');
    assert.ok(rows[0].attempts >= 3);
  });

  it('a client that does not ask for sid is told by sub alone', async () => {
    const res = await api.post('/clients', {
      redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'], first_party: true,
      backchannel_logout_uri: `${endpoint.uri}?by-sub`,
    });
    assert.equal(res.status, 201, res.text);
    const bySub = await rpConfig(ts, { clientId: res.body.client_id, clientSecret: res.body.client_secret });
    const user = await createUser(ts);
    const { tokens } = await signIn(ts, bySub, user);
    assert.equal(tokens.claims()!.sid, undefined);
    await api.post(`/users/${user.id}/suspend`);
    const payload = await waitFor('the logout token', async () => {
      for (const post of endpoint.posts) {
        const [, body] = post.token!.split('.');
        const claims = JSON.parse(Buffer.from(body!, 'base64url').toString()) as JWTPayload;
        if (claims.aud === res.body.client_id) return verifyLogoutToken(post.token!, res.body.client_id);
      }
      return undefined;
    });
    assert.equal(payload.sub, user.id);
    assert.equal(payload.sid, undefined);
  });

  it('a client without a backchannel_logout_uri queues nothing', async () => {
    const res = await api.post('/clients', {
      redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'], first_party: true,
    });
    const plain = await rpConfig(ts, { clientId: res.body.client_id, clientSecret: res.body.client_secret });
    const user = await createUser(ts);
    const { tokens } = await signIn(ts, plain, user);
    assert.equal(tokens.claims()!.sid, undefined, 'no sid for a client that cannot use it');
    assert.equal((await api.post(`/users/${user.id}/suspend`)).status, 200);
    await sleep(300);
    const rows = await ts.server.services.db('webhook_deliveries').where({ kind: 'backchannel_logout' })
      .whereRaw(`body::jsonb->>'accountId' = ?`, [user.id]);
    assert.equal(rows.length, 0);
  });

  it('a backchannel_logout_uri that is not an absolute URL is refused at registration', async () => {
    const res = await api.post('/clients', {
      redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'], backchannel_logout_uri: 'not a url',
    });
    assert.equal(res.status, 400, res.text);
  });
});
