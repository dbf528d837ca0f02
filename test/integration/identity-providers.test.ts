import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AdminApi, adminToken, assertError, marker, seenAnswers, startAdminServer } from '../helpers/admin.ts';
import { samlIdpMetadata, selfSignedIdentity, type SigningIdentity } from '../helpers/saml-idp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';

const UNKNOWN_UUID = '8a4c7a2e-0d6b-4f1e-9a53-3b1f0c2d9e77';

describe('identity providers in the admin API', () => {
  let ts: TestServer;
  let api: AdminApi;
  let identity: SigningIdentity;
  let metadataServer: http.Server;
  let metadataBase: string;
  /** What the local "IdP" publishes at /metadata; /broken answers 500. */
  let published = '';

  const oidcBody = (alias = marker('oidc')) => ({
    alias, type: 'oidc', displayName: 'Acme SSO', issuer: 'https://sso.acme.example', clientId: 'our-client', clientSecret: `upstream-secret-${marker()}`,
  });
  const metadataOf = (entityId = `https://idp-${marker()}.example/metadata`) =>
    samlIdpMetadata({ entityId, ssoUrl: 'https://idp.example/sso', identity });

  before(async () => {
    identity = await selfSignedIdentity();
    metadataServer = http.createServer((req, res) => {
      if (req.url === '/metadata') {
        res.writeHead(200, { 'content-type': 'application/samlmetadata+xml' }).end(published);
      } else res.writeHead(500).end('down');
    });
    await new Promise<void>((resolve) => metadataServer.listen(0, '127.0.0.1', resolve));
    metadataBase = `http://127.0.0.1:${(metadataServer.address() as AddressInfo).port}`;
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
  });

  after(async () => {
    await stopAndDestroy(ts);
    await new Promise((resolve) => metadataServer.close(resolve));
  });

  it('an oidc provider: created with its defaults and our redirect URI, read, listed; the secret never comes back', async () => {
    const body = oidcBody();
    const created = await api.post('/identity-providers', body);
    assert.equal(created.status, 201, created.text);
    const p = created.body;
    assert.equal(p.alias, body.alias);
    assert.equal(p.type, 'oidc');
    assert.equal(p.jitProvisioning, 'on');
    assert.equal(p.accountLinking, 'prove-control');
    assert.equal(p.trustEmail, false);
    assert.equal(p.trustUpstreamMfa, false);
    assert.equal(p.hasClientSecret, true);
    assert.deepEqual(p.oidc.scopes, ['openid', 'email', 'profile']);
    assert.equal(p.oidc.tokenEndpointAuthMethod, 'client_secret_basic');
    assert.equal(p.oidc.claimMapping.subject, 'sub');
    assert.deepEqual(p.endpoints, { redirectUri: `${ts.issuer}/api/v1/auth/oidc/${body.alias}/callback` });

    const read = await api.get(`/identity-providers/${p.id}`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body, p);
    const list = await api.get('/identity-providers?pageSize=100');
    assert.ok(list.body.data.some((x: { id: string }) => x.id === p.id));
    assert.ok(!seenAnswers.some((text) => text.includes(body.clientSecret)), 'the client secret is in no answer');

    // Sealed at rest: the column holds no trace of it either.
    const [row] = await ts.server.services.db('identity_providers').where({ id: p.id });
    assert.ok(row.client_secret_sealed && !row.client_secret_sealed.includes(body.clientSecret));
    assert.equal(JSON.stringify(row.settings).includes(body.clientSecret), false);
  });

  it('a taken alias answers 409 IDENT_IDP_DUPLICATE and creates nothing', async () => {
    const body = oidcBody();
    assert.equal((await api.post('/identity-providers', body)).status, 201);
    const before = (await api.get('/identity-providers?pageSize=100')).body.total;
    assertError(await api.post('/identity-providers', { ...body, displayName: 'Other' }), 409, 'IDENT_IDP_DUPLICATE');
    assert.equal((await api.get('/identity-providers?pageSize=100')).body.total, before);
  });

  it('bad input: 400 with the envelope, nothing stored', async () => {
    const before = (await api.get('/identity-providers?pageSize=100')).body.total;
    const cases: [string, unknown][] = [
      ['no type', { alias: marker('a'), displayName: 'X', issuer: 'https://x.example', clientId: 'c', clientSecret: 's' }],
      ['unknown type', { ...oidcBody(), type: 'ldap' }],
      ['upper-case alias', { ...oidcBody(), alias: 'Acme' }],
      ['alias with a slash', { ...oidcBody(), alias: 'a/b' }],
      ['http issuer off loopback', { ...oidcBody(), issuer: 'http://sso.acme.example' }],
      ['issuer with credentials', { ...oidcBody(), issuer: 'https://u:p@sso.acme.example' }],
      ['not a URL', { ...oidcBody(), issuer: 'sso.acme.example' }],
      ['no secret for client_secret_basic', { ...oidcBody(), clientSecret: undefined }],
      ['a secret for a public client', { ...oidcBody(), tokenEndpointAuthMethod: 'none' }],
      ['unknown field', { ...oidcBody(), metadataXml: '<x/>' }],
      ['jitProvisioning not on|off', { ...oidcBody(), jitProvisioning: true }],
      ['bad domain', { ...oidcBody(), allowedDomains: ['not a domain'] }],
      ['control characters in the name', { ...oidcBody(), displayName: 'A\u0007' }],
      ['oauth2 without a user endpoint', { alias: marker('gh'), type: 'oauth2', displayName: 'GH', authorizationEndpoint: 'https://gh.example/authorize', tokenEndpoint: 'https://gh.example/token', clientId: 'c', clientSecret: 's' }],
      ['saml with neither metadata', { alias: marker('s'), type: 'saml', displayName: 'S' }],
      ['saml with both', { alias: marker('s'), type: 'saml', displayName: 'S', metadataXml: metadataOf(), metadataUrl: `${metadataBase}/metadata` }],
      ['saml metadata that is not metadata', { alias: marker('s'), type: 'saml', displayName: 'S', metadataXml: '<EntityDescriptor/>' }],
      ['saml metadata without a signing certificate', { alias: marker('s'), type: 'saml', displayName: 'S', metadataXml: metadataOf().replace(/<KeyDescriptor[\s\S]*<\/KeyDescriptor>/, '') }],
      ['saml with a client secret', { alias: marker('s'), type: 'saml', displayName: 'S', metadataXml: metadataOf(), clientSecret: 'x' }],
    ];
    for (const [what, body] of cases) {
      assertError(await api.post('/identity-providers', body), 400, 'IDENT_VALIDATION', what);
    }
    assert.equal((await api.get('/identity-providers?pageSize=100')).body.total, before, 'nothing was stored');
  });

  it('a saml provider from metadata XML: entity ID read from it, our SP endpoints given, the XML not echoed', async () => {
    const entityId = `https://idp-${marker()}.example/metadata`;
    const alias = marker('saml');
    const res = await api.post('/identity-providers', { alias, type: 'saml', displayName: 'Corp', metadataXml: metadataOf(entityId), allowedDomains: ['Corp.Example'] });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.saml.entityId, entityId);
    assert.equal(res.body.saml.ssoRedirectUrl, 'https://idp.example/sso');
    assert.equal(res.body.saml.wantAssertionsSigned, true, 'signed assertions by default');
    assert.equal(res.body.saml.metadataUrl, null);
    assert.equal('metadataXml' in res.body.saml, false);
    assert.equal(res.body.hasClientSecret, false);
    assert.deepEqual(res.body.allowedDomains, ['corp.example']);
    const base = `${ts.issuer}/api/v1/auth/saml/${alias}`;
    assert.deepEqual(res.body.endpoints, { entityId: `${base}/metadata`, metadataUrl: `${base}/metadata`, acsUrl: `${base}/acs`, sloUrl: `${base}/slo` });
  });

  it('a saml provider from a metadata URL: fetched at once; an upstream that fails answers 503 IDENT_FEDERATION_UNAVAILABLE', async () => {
    const entityId = `https://idp-${marker()}.example/metadata`;
    published = metadataOf(entityId);
    const res = await api.post('/identity-providers', { alias: marker('saml'), type: 'saml', displayName: 'Fetched', metadataUrl: `${metadataBase}/metadata` });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.saml.entityId, entityId);
    assert.equal(res.body.saml.metadataUrl, `${metadataBase}/metadata`);

    assertError(await api.post('/identity-providers', { alias: marker('saml'), type: 'saml', displayName: 'Down', metadataUrl: `${metadataBase}/broken` }), 503, 'IDENT_FEDERATION_UNAVAILABLE');
    // Nothing listens on port 9 of the loopback (discard): the connection is refused at once.
    assertError(await api.post('/identity-providers', { alias: marker('saml'), type: 'saml', displayName: 'Gone', metadataUrl: 'http://127.0.0.1:9/metadata' }), 503, 'IDENT_FEDERATION_UNAVAILABLE');
  });

  it('PATCH changes what it names; the secret rotates or goes only as the auth method allows; fields of another type are refused', async () => {
    const created = (await api.post('/identity-providers', oidcBody())).body;
    const renamed = await api.patch(`/identity-providers/${created.id}`, { displayName: 'Renamed', scopes: ['openid', 'email'], jitProvisioning: 'off', allowedDomains: ['acme.example'] });
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.displayName, 'Renamed');
    assert.deepEqual(renamed.body.oidc.scopes, ['openid', 'email']);
    assert.equal(renamed.body.jitProvisioning, 'off');
    assert.equal(renamed.body.oidc.issuer, created.oidc.issuer, 'untouched fields stay');

    const [before] = await ts.server.services.db('identity_providers').where({ id: created.id });
    assert.equal((await api.patch(`/identity-providers/${created.id}`, { clientSecret: 'rotated-secret' })).status, 200);
    const [rotated] = await ts.server.services.db('identity_providers').where({ id: created.id });
    assert.notEqual(rotated.client_secret_sealed, before.client_secret_sealed);

    assertError(await api.patch(`/identity-providers/${created.id}`, { clientSecret: null }), 400, 'IDENT_VALIDATION', 'client_secret_basic needs a secret');
    const publicClient = await api.patch(`/identity-providers/${created.id}`, { clientSecret: null, tokenEndpointAuthMethod: 'none' });
    assert.equal(publicClient.status, 200, publicClient.text);
    assert.equal(publicClient.body.hasClientSecret, false);

    assertError(await api.patch(`/identity-providers/${created.id}`, { metadataXml: metadataOf() }), 400, 'IDENT_VALIDATION', 'a saml field on an oidc provider');
    assertError(await api.patch(`/identity-providers/${created.id}`, { type: 'saml' }), 400, 'IDENT_VALIDATION', 'the type does not change');
    assertError(await api.patch(`/identity-providers/${created.id}`, { alias: 'other' }), 400, 'IDENT_VALIDATION', 'the alias does not change');
    assertError(await api.patch(`/identity-providers/${created.id}`, { issuer: 'http://evil.example' }), 400, 'IDENT_VALIDATION');
    assert.equal((await api.get(`/identity-providers/${created.id}`)).body.oidc.issuer, created.oidc.issuer, 'a refused change changed nothing');
  });

  it('DELETE removes it (then 404); unknown and malformed ids answer 404 IDENT_IDP_NOT_FOUND', async () => {
    const created = (await api.post('/identity-providers', oidcBody())).body;
    assert.equal((await api.delete(`/identity-providers/${created.id}`)).status, 204);
    assertError(await api.get(`/identity-providers/${created.id}`), 404, 'IDENT_IDP_NOT_FOUND');
    assertError(await api.delete(`/identity-providers/${created.id}`), 404, 'IDENT_IDP_NOT_FOUND');
    assertError(await api.patch(`/identity-providers/${UNKNOWN_UUID}`, { displayName: 'x' }), 404, 'IDENT_IDP_NOT_FOUND');
    assertError(await api.get('/identity-providers/not-a-uuid'), 404, 'IDENT_IDP_NOT_FOUND');
  });

  it('scopes: reading needs iam.idps:read, changing needs its own scope', async () => {
    const readOnly = new AdminApi(ts, await adminToken(ts, ['iam.idps:read']));
    assert.equal((await readOnly.get('/identity-providers')).status, 200);
    assertError(await readOnly.post('/identity-providers', oidcBody()), 403, 'IDENT_FORBIDDEN');
    const usersOnly = new AdminApi(ts, await adminToken(ts, ['iam.users:read']));
    assertError(await usersOnly.get('/identity-providers'), 403, 'IDENT_FORBIDDEN');
  });
});
