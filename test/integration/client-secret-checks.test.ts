import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { tokenRequest } from '../helpers/admin.ts';
import { onPostgres, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

/**
 * An instance remembers which secret last authenticated a client (oidc/client-secrets.ts), so
 * the keyed digest is not recomputed on every token request. A rotated or deleted client must
 * still be refused at once.
 */
const GRANT = { grant_type: 'client_credentials' };

async function newClient(ts: TestServer) {
  const out = await ts.server.services.clients.register(DEFAULT_SCOPE, {
    metadata: { grant_types: ['client_credentials'], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic' },
  });
  return { id: out.client_id, secret: out.client_secret as string };
}

describe('client secret checks on one instance', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => stopAndDestroy(ts));

  it('the remembered secret is the only one accepted: another, even of the same length, is refused', async () => {
    const client = await newClient(ts);
    for (let i = 0; i < 3; i++) assert.equal((await tokenRequest(ts, client, GRANT)).status, 200);
    const wrong = `${client.secret.slice(0, -1)}${client.secret.endsWith('A') ? 'B' : 'A'}`;
    const refused = await tokenRequest(ts, { id: client.id, secret: wrong }, GRANT);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_client');
    assert.equal((await tokenRequest(ts, client, GRANT)).status, 200, 'the right secret still works after a wrong one');
  });

  it('a rotated secret: the old one is refused at once, though it authenticated a moment before', async () => {
    const client = await newClient(ts);
    for (let i = 0; i < 3; i++) assert.equal((await tokenRequest(ts, client, GRANT)).status, 200);
    const rotated = await ts.server.services.clients.rotateSecret(DEFAULT_SCOPE, client.id);
    const old = await tokenRequest(ts, client, GRANT);
    assert.equal(old.status, 401);
    assert.equal(old.body.error, 'invalid_client');
    assert.equal((await tokenRequest(ts, { id: client.id, secret: rotated }, GRANT)).status, 200);
    assert.equal((await tokenRequest(ts, client, GRANT)).status, 401, 'the old secret stays refused');
  });

  it('a deleted client is refused at once', async () => {
    const client = await newClient(ts);
    assert.equal((await tokenRequest(ts, client, GRANT)).status, 200);
    await ts.server.services.clients.remove(DEFAULT_SCOPE, client.id);
    const refused = await tokenRequest(ts, client, GRANT);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_client');
  });
});

// Instances share PostgreSQL and Redis; the embedded store is single-instance.
describe('client secret checks across two instances', { skip: !(onPostgres && process.env.REDIS_URL) && 'needs PostgreSQL + Redis (DATABASE_URL, REDIS_URL)' }, () => {
  let a: TestServer;
  let b: TestServer;
  before(async () => {
    a = await startTestServer();
    b = await startTestServer({ ISSUER: a.issuer }, { store: a.store });
  });
  after(async () => {
    await b?.stop();
    await stopAndDestroy(a);
  });

  it('a secret rotated on A is refused by B, which had just accepted it, as soon as the change reaches B', async () => {
    const client = await newClient(a);
    for (let i = 0; i < 3; i++) assert.equal((await tokenRequest(b, client, GRANT)).status, 200, 'B remembers the secret');
    const rotated = await a.server.services.clients.rotateSecret(DEFAULT_SCOPE, client.id);
    // Redis pub/sub carries the change to B (the same path as every client change): poll briefly.
    await waitFor('B refuses the old secret', async () => (await tokenRequest(b, client, GRANT)).status === 401);
    for (let i = 0; i < 3; i++) assert.equal((await tokenRequest(b, client, GRANT)).status, 401, 'and keeps refusing it');
    assert.equal((await tokenRequest(b, { id: client.id, secret: rotated }, GRANT)).status, 200);
  });
});
