import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import { AdminApi, adminToken, assertClientError, assertError, marker, startAdminServer, type ApiAnswer, type CallOptions } from '../helpers/admin.ts';
import { uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';

/**
 * Bad input against the admin API: every request here is answered with the error envelope and a
 * 4xx (never a 500), and none of them changes anything stored.
 */

const machine = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };
const UUID = '3f2b8c1a-5d4e-4f6a-8b7c-9d0e1f2a3b4c';

describe('admin API input battery', () => {
  let ts: TestServer;
  let api: AdminApi;
  let user: { id: string; email: string };
  let clientId: string;
  let rsId: string;

  /** Row counts and a fingerprint of every row the API can change. */
  async function snapshot() {
    const db = ts.server.services.db;
    const [users, clients, rs, keys] = await Promise.all([
      db('users').select('id', 'email', 'given_name', 'family_name', 'locale', 'status', 'password_hash', 'email_verified').orderBy('id'),
      db('clients').select('client_id', 'metadata', 'secret_digest', 'first_party').orderBy('client_id'),
      db('resource_servers').select('id', 'identifier', 'name', 'scopes', 'access_token_format', 'access_token_ttl').orderBy('id'),
      db('idempotency_keys').select('scope', 'key').orderBy('key'),
    ]);
    return JSON.stringify({ users, clients, rs, keys });
  }

  /** Sends each request and checks: 4xx envelope (the given status and code when named), nothing changed. */
  async function rejects(
    cases: [what: string, method: string, path: string, opts: CallOptions, expect?: [number, string]][],
  ): Promise<ApiAnswer[]> {
    const before = await snapshot();
    const answers: ApiAnswer[] = [];
    for (const [what, method, path, opts, expect] of cases) {
      const res = await api.call(method, path, opts);
      if (expect) assertError(res, expect[0], expect[1], what);
      else assertClientError(res, what);
      answers.push(res);
    }
    assert.equal(await snapshot(), before, 'rejected requests change nothing');
    return answers;
  }

  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
    const u = await api.post('/users', { email: uniqueEmail('input'), password: 'input password 1', givenName: 'Input' });
    assert.equal(u.status, 201, u.text);
    user = u.body;
    const c = await api.post('/clients', { ...machine, client_name: 'input client' });
    assert.equal(c.status, 201, c.text);
    clientId = c.body.client_id;
    const r = await api.post('/resource-servers', { identifier: 'https://input.example.test', scopes: ['a'] });
    assert.equal(r.status, 201, r.text);
    rsId = r.body.id;
  });
  after(() => stopAndDestroy(ts));

  const writes = () => [
    ['POST', '/users'],
    ['PATCH', `/users/${user.id}`],
    ['POST', '/clients'],
    ['PATCH', `/clients/${clientId}`],
    ['POST', '/resource-servers'],
    ['PATCH', `/resource-servers/${rsId}`],
  ] as const;

  it('malformed JSON: 400 IDENT_VALIDATION', async () => {
    const bodies = ['{bad', '{"email":', '{"email":"a@b.test",}', "{'email':'a@b.test'}", '{"email":"a@b.test"}x', 'null', '"x"', '1', 'true',
      '[]', '[{"email":"a@b.test"}]', '\u0000', '{"email":"a@b.test"', 'NaN'];
    const cases: Parameters<typeof rejects>[0] = [];
    for (const [method, path] of writes()) {
      for (const raw of bodies) cases.push([`${method} ${path} ${JSON.stringify(raw)}`, method, path, { raw }, [400, 'IDENT_VALIDATION']]);
    }
    await rejects(cases);
  });

  it('an empty JSON body on a create: 400; prototype pollution attempts: 400 and no pollution', async () => {
    await rejects([
      ['empty user', 'POST', '/users', { raw: '' }, [400, 'IDENT_VALIDATION']],
      ['empty rs', 'POST', '/resource-servers', { raw: '' }, [400, 'IDENT_VALIDATION']],
      ['empty client', 'POST', '/clients', { raw: '' }, [400, 'IDENT_VALIDATION']],
      ['__proto__', 'POST', '/users', { raw: '{"email":"p@x.test","__proto__":{"polluted":true}}' }, [400, 'IDENT_VALIDATION']],
      ['constructor', 'POST', '/clients', { raw: '{"redirect_uris":[],"constructor":{"prototype":{"polluted":true}}}' }],
      ['nested __proto__', 'PATCH', `/resource-servers/${rsId}`, { raw: '{"name":"x","a":{"__proto__":{"polluted":true}}}' }, [400, 'IDENT_VALIDATION']],
    ]);
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
  });

  it('deeply nested JSON: 400, not a stack overflow (unknown client metadata included)', async () => {
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const validClient = '"grant_types":["client_credentials"],"response_types":[],"redirect_uris":[]';
    await rejects([
      ['deep array user', 'POST', '/users', { raw: deep(50_000) }, [400, 'IDENT_VALIDATION']],
      ['deep field user', 'POST', '/users', { raw: `{"email":"d@x.test","givenName":${deep(50_000)}}` }, [400, 'IDENT_VALIDATION']],
      ['deep unknown client field', 'POST', '/clients', { raw: `{${validClient},"x_deep":${deep(50_000)}}` }, [400, 'IDENT_VALIDATION']],
      // The idempotency hash serialises the body: a deep one must be refused before it gets there.
      ['deep, with a key', 'POST', '/clients', {
        raw: `{${validClient},"x_deep":${deep(50_000)}}`, headers: { 'idempotency-key': marker() },
      }, [400, 'IDENT_VALIDATION']],
      ['deep patch', 'PATCH', `/clients/${clientId}`, { raw: `{"x_deep":${deep(10_000)}}` }, [400, 'IDENT_VALIDATION']],
    ]);
    // Realistic nesting (a JWKS in client metadata) is fine.
    const jwks = { keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', use: 'sig' }] };
    const ok = await api.post('/clients', { ...machine, token_endpoint_auth_method: 'private_key_jwt', jwks });
    assert.equal(ok.status, 201, ok.text);
    assert.deepEqual(ok.body.jwks, jwks);
    assert.equal(ok.body.client_secret, undefined);
  });

  it('wrong types: 400 IDENT_VALIDATION', async () => {
    const u = `/users/${user.id}`;
    const c = `/clients/${clientId}`;
    const r = `/resource-servers/${rsId}`;
    const cases: [string, string, unknown][] = [
      ['POST', '/users', { email: 42 }],
      ['POST', '/users', { email: ['a@b.test'] }],
      ['POST', '/users', { email: 'not-an-email' }],
      ['POST', '/users', { email: 'a@b.test', emailVerified: 'true' }],
      ['POST', '/users', { email: 'a@b.test', givenName: { first: 'x' } }],
      ['POST', '/users', { email: 'a@b.test', givenName: null }],
      ['POST', '/users', { email: 'a@b.test', givenName: '' }],
      ['POST', '/users', { email: 'a@b.test', locale: ['en'] }],
      ['POST', '/users', { email: 'a@b.test', locale: 'english please' }],
      ['POST', '/users', { email: 'a@b.test', password: 12345678 }],
      ['POST', '/users', { email: 'a@b.test', password: 'short' }],
      ['POST', '/users', { givenName: 'no email' }],
      ['PATCH', u, { email: null }],
      ['PATCH', u, { emailVerified: 1 }],
      ['PATCH', u, { password: null }],
      ['PATCH', u, { locale: 7 }],
      ['POST', '/clients', { redirect_uris: 'https://a.test/cb' }],
      ['POST', '/clients', { ...machine, grant_types: [1] }],
      ['POST', '/clients', { ...machine, grant_types: ['password'] }],
      ['POST', '/clients', { ...machine, first_party: 'yes' }],
      ['POST', '/clients', { ...machine, client_name: 42 }],
      ['POST', '/clients', { ...machine, client_id: 'has space' }],
      ['POST', '/clients', { ...machine, client_secret: 'too short' }],
      ['POST', '/clients', { ...machine, token_endpoint_auth_method: 'magic' }],
      ['POST', '/clients', { ...machine, scope: 'not-a-scope' }],
      ['POST', '/clients', { redirect_uris: ['javascript:alert(1)'] }],
      ['POST', '/clients', { ...machine, jwks: 'x' }],
      ['POST', '/clients', {}],
      ['PATCH', c, { redirect_uris: [42] }],
      ['PATCH', c, { introspection_allowed: 'no' }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: 'a b' }],
      ['POST', '/resource-servers', { identifier: 'https://t.test' }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: ['a b'] }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: [1] }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: ['読む'] }], // RFC 6749 scope tokens are ASCII
      ['POST', '/resource-servers', { identifier: 'not a uri', scopes: [] }],
      ['POST', '/resource-servers', { identifier: '/relative', scopes: [] }],
      ['POST', '/resource-servers', { identifier: 'https://t.test#frag', scopes: [] }],
      ['POST', '/resource-servers', { identifier: 42, scopes: [] }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: [], accessTokenTtl: '300' }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: [], accessTokenTtl: 60.5 }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: [], accessTokenTtl: 59 }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: [], accessTokenTtl: 86_401 }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: [], accessTokenFormat: 'paseto' }],
      ['POST', '/resource-servers', { identifier: 'https://t.test', scopes: Array.from({ length: 201 }, (_, i) => `s${i}`) }],
      ['PATCH', r, { scopes: null }],
      ['PATCH', r, { accessTokenFormat: null }],
    ];
    await rejects(cases.map(([m, p, json]) => [`${m} ${p} ${JSON.stringify(json).slice(0, 80)}`, m, p, { json }, [400, 'IDENT_VALIDATION']]));
  });

  it('unknown fields: rejected for users and resource servers, ignored (not echoed, not stored) for clients', async () => {
    await rejects([
      ['user role', 'POST', '/users', { json: { email: uniqueEmail(), role: 'admin' } }, [400, 'IDENT_VALIDATION']],
      ['user id', 'POST', '/users', { json: { email: uniqueEmail(), id: UUID } }, [400, 'IDENT_VALIDATION']],
      ['user status', 'POST', '/users', { json: { email: uniqueEmail(), status: 'suspended' } }, [400, 'IDENT_VALIDATION']],
      ['user passwordHash', 'PATCH', `/users/${user.id}`, { json: { passwordHash: '$argon2id$v=19$...' } }, [400, 'IDENT_VALIDATION']],
      ['user status patch', 'PATCH', `/users/${user.id}`, { json: { status: 'active' } }, [400, 'IDENT_VALIDATION']],
      ['rs owner', 'POST', '/resource-servers', { json: { identifier: 'https://u.test', scopes: [], owner: 'x' } }, [400, 'IDENT_VALIDATION']],
      ['rs identifier patch', 'PATCH', `/resource-servers/${rsId}`, { json: { identifier: 'https://moved.test' } }, [400, 'IDENT_VALIDATION']],
    ]);
    const res = await api.post('/users', { email: uniqueEmail(), role: 'admin' });
    assert.match(res.body.message, /role/, 'the message names the field');

    const created = await api.post('/clients', { ...machine, client_name: 'with extras', x_custom: 'ignored', software_statement_xyz: { a: 1 } });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.x_custom, undefined);
    assert.equal(created.body.software_statement_xyz, undefined);
    const got = await api.get(`/clients/${created.body.client_id}`);
    assert.ok(!got.text.includes('x_custom'));
    const row = await ts.server.services.db('clients').where({ client_id: created.body.client_id }).first();
    assert.ok(!JSON.stringify(row.metadata).includes('x_custom'), 'not stored');
    const patched = await api.patch(`/clients/${created.body.client_id}`, { x_custom: 'again' });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.x_custom, undefined);
    // client_secret and client_id in a patch do not change the client.
    const secretTry = await api.patch(`/clients/${created.body.client_id}`, { client_secret: 'x'.repeat(40), client_id: 'renamed' });
    assert.equal(secretTry.status, 200);
    assert.equal(secretTry.body.client_id, created.body.client_id);
    assert.equal(secretTry.body.client_secret, undefined);
    const after = await ts.server.services.db('clients').where({ client_id: created.body.client_id }).first();
    assert.equal(after.secret_digest, row.secret_digest, 'the secret is unchanged');
    await api.delete(`/clients/${created.body.client_id}`);
  });

  it('bodies over 1 MB: 413 IDENT_PAYLOAD_TOO_LARGE; just under: validated as usual', async () => {
    const big = JSON.stringify({ email: 'big@x.test', givenName: 'x'.repeat(1_100_000) });
    const cases: Parameters<typeof rejects>[0] = [];
    for (const [method, path] of writes()) cases.push([`${method} ${path}`, method, path, { raw: big }, [413, 'IDENT_PAYLOAD_TOO_LARGE']]);
    cases.push(['huge array', 'POST', '/resource-servers', { json: { identifier: 'https://big.test', scopes: Array(300_000).fill('abcd') } }, [413, 'IDENT_PAYLOAD_TOO_LARGE']]);
    cases.push(['under the limit', 'POST', '/users', { raw: JSON.stringify({ email: 'big@x.test', givenName: 'x'.repeat(900_000) }) }, [400, 'IDENT_VALIDATION']]);
    await rejects(cases);
  });

  it('bodies that are not application/json: 415 IDENT_UNSUPPORTED_MEDIA_TYPE', async () => {
    const json = JSON.stringify({ email: uniqueEmail(), identifier: 'https://ct.test', scopes: [], ...machine });
    const types = [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/merge-patch+json',
      'application/jsonx',
      'text/json-ish',
      '',
    ];
    const cases: Parameters<typeof rejects>[0] = [];
    for (const [method, path] of writes()) {
      for (const type of types) cases.push([`${method} ${path} ${type}`, method, path, { raw: json, headers: { 'content-type': type } }, [415, 'IDENT_UNSUPPORTED_MEDIA_TYPE']]);
    }
    cases.push(['form body', 'POST', '/users', { raw: `email=${uniqueEmail()}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, [415, 'IDENT_UNSUPPORTED_MEDIA_TYPE']]);
    await rejects(cases);
    // application/json with parameters is JSON.
    const ok = await api.call('POST', '/users', { raw: JSON.stringify({ email: uniqueEmail('ct') }), headers: { 'content-type': 'application/json; charset=utf-8' } });
    assert.equal(ok.status, 201, ok.text);
  });

  it('odd but valid Unicode (emoji, ZWJ, RTL, combining marks) is stored and returned exactly', async () => {
    const names = {
      emoji: '👩🏽‍💻 Zoë 🏳️‍🌈',
      rtl: 'שלום عليكم \u202Eevil\u202C',
      combining: 'e\u0301le\u0300ve Z\u0351\u0364a\u0307l\u0308g\u0335o\u0334',
      nfc: '\u00e9', // a precomposed é: distinct from e + U+0301 above
      cjk: '漢字かなカナ한글',
      paired: '\ud83d\ude00',
    };
    for (const [what, name] of Object.entries(names)) {
      const created = await api.post('/users', { email: uniqueEmail(what), givenName: name, familyName: name });
      assert.equal(created.status, 201, `${what}: ${created.text}`);
      assert.equal(created.body.givenName, name, what);
      const got = await api.get(`/users/${created.body.id}`);
      assert.equal(got.body.givenName, name, what);
      assert.equal(got.body.familyName, name, what);
      const found = await api.get(`/users?search=${encodeURIComponent(name)}`);
      assert.ok(found.body.data.some((u: { id: string }) => u.id === created.body.id), `${what}: searchable`);
    }
    // The escaped form of a surrogate pair is the same character.
    const escaped = await api.call('POST', '/users', { raw: `{"email":"${uniqueEmail('esc')}","givenName":"\\ud83d\\ude00"}` });
    assert.equal(escaped.status, 201, escaped.text);
    assert.equal(escaped.body.givenName, '😀');

    const rs = await api.post('/resource-servers', { identifier: `https://xn--${marker()}.example.test/日本/😀`, name: names.emoji, scopes: ['read'] });
    assert.equal(rs.status, 201, rs.text);
    assert.equal((await api.get(`/resource-servers/${rs.body.id}`)).body.name, names.emoji);
    const client = await api.post('/clients', { ...machine, client_name: names.rtl });
    assert.equal(client.status, 201, client.text);
    assert.equal((await api.get(`/clients/${client.body.client_id}`)).body.client_name, names.rtl);
  });

  it('lone surrogates (escaped in JSON) are refused, not silently replaced', async () => {
    const lone = ['\\ud800', '\\udfff', 'a\\ud800b', '\\udc00\\ud800'];
    const cases: Parameters<typeof rejects>[0] = [];
    for (const s of lone) {
      cases.push(
        [`givenName ${s}`, 'POST', '/users', { raw: `{"email":"${uniqueEmail()}","givenName":"${s}"}` }, [400, 'IDENT_VALIDATION']],
        [`password ${s}`, 'POST', '/users', { raw: `{"email":"${uniqueEmail()}","password":"password${s}"}` }, [400, 'IDENT_VALIDATION']],
        [`patch familyName ${s}`, 'PATCH', `/users/${user.id}`, { raw: `{"familyName":"${s}"}` }, [400, 'IDENT_VALIDATION']],
        [`client_name ${s}`, 'POST', '/clients', { raw: `{"grant_types":["client_credentials"],"response_types":[],"redirect_uris":[],"client_name":"${s}"}` }, [400, 'IDENT_VALIDATION']],
        [`client_uri ${s}`, 'PATCH', `/clients/${clientId}`, { raw: `{"client_uri":"https://a.test/${s}"}` }, [400, 'IDENT_VALIDATION']],
        [`rs name ${s}`, 'POST', '/resource-servers', { raw: `{"identifier":"https://s.test","name":"${s}","scopes":[]}` }, [400, 'IDENT_VALIDATION']],
        [`rs identifier ${s}`, 'POST', '/resource-servers', { raw: `{"identifier":"https://s.test/${s}","scopes":[]}` }, [400, 'IDENT_VALIDATION']],
      );
    }
    await rejects(cases);
  });

  it('NUL in body strings: 400; in path ids: 404 with the specific code; in the query: 400', async () => {
    const nul = '\\u0000';
    await rejects([
      ['givenName', 'POST', '/users', { raw: `{"email":"${uniqueEmail()}","givenName":"a${nul}b"}` }, [400, 'IDENT_VALIDATION']],
      ['email', 'POST', '/users', { raw: `{"email":"a${nul}@b.test"}` }, [400, 'IDENT_VALIDATION']],
      ['password', 'POST', '/users', { raw: `{"email":"${uniqueEmail()}","password":"password${nul}"}` }, [400, 'IDENT_VALIDATION']],
      ['locale', 'PATCH', `/users/${user.id}`, { raw: `{"locale":"en${nul}"}` }, [400, 'IDENT_VALIDATION']],
      ['key', 'POST', '/users', { raw: `{"email":"${uniqueEmail()}","given${nul}Name":"x"}` }, [400, 'IDENT_VALIDATION']],
      ['client_name', 'POST', '/clients', { json: { ...machine, client_name: 'a\u0000b' } }, [400, 'IDENT_VALIDATION']],
      ['client_id', 'POST', '/clients', { json: { ...machine, client_id: 'a\u0000b' } }, [400, 'IDENT_VALIDATION']],
      ['redirect_uris', 'POST', '/clients', { json: { redirect_uris: ['https://a.test/cb\u0000'] } }, [400, 'IDENT_VALIDATION']],
      ['client_uri', 'POST', '/clients', { json: { ...machine, client_uri: 'https://a.test/\u0000' } }, [400, 'IDENT_VALIDATION']],
      ['logo_uri patch', 'PATCH', `/clients/${clientId}`, { json: { logo_uri: 'https://a.test/\u0000' } }, [400, 'IDENT_VALIDATION']],
      ['unknown client field', 'POST', '/clients', { json: { ...machine, x_note: 'a\u0000' } }, [400, 'IDENT_VALIDATION']],
      ['rs identifier', 'POST', '/resource-servers', { json: { identifier: 'https://n.test/\u0000', scopes: [] } }, [400, 'IDENT_VALIDATION']],
      ['rs name', 'POST', '/resource-servers', { json: { identifier: 'https://n.test', name: '\u0000', scopes: [] } }, [400, 'IDENT_VALIDATION']],
      ['rs scope', 'PATCH', `/resource-servers/${rsId}`, { json: { scopes: ['a\u0000'] } }, [400, 'IDENT_VALIDATION']],
      ['search', 'GET', '/users?search=a%00b', {}, [400, 'IDENT_VALIDATION']],
      ['status', 'GET', '/users?status=active%00', {}, [400, 'IDENT_VALIDATION']],
      ['user id', 'GET', '/users/%00', {}, [404, 'IDENT_USER_NOT_FOUND']],
      ['user id suffix', 'PATCH', `/users/${user.id}%00`, { json: { givenName: 'x' } }, [404, 'IDENT_USER_NOT_FOUND']],
      ['user suspend', 'POST', `/users/${user.id}%00/suspend`, {}, [404, 'IDENT_USER_NOT_FOUND']],
      ['user delete', 'DELETE', `/users/${user.id}%00`, {}, [404, 'IDENT_USER_NOT_FOUND']],
      ['client id', 'GET', `/clients/${clientId}%00`, {}, [404, 'IDENT_CLIENT_NOT_FOUND']],
      ['client patch', 'PATCH', `/clients/${clientId}%00`, { json: { client_name: 'x' } }, [404, 'IDENT_CLIENT_NOT_FOUND']],
      ['client delete', 'DELETE', '/clients/%00', {}, [404, 'IDENT_CLIENT_NOT_FOUND']],
      ['client secret', 'POST', `/clients/${clientId}%00/secret`, {}, [404, 'IDENT_CLIENT_NOT_FOUND']],
      ['rs id', 'GET', `/resource-servers/${rsId}%00`, {}, [404, 'IDENT_RESOURCE_SERVER_NOT_FOUND']],
      ['rs delete', 'DELETE', '/resource-servers/%00', {}, [404, 'IDENT_RESOURCE_SERVER_NOT_FOUND']],
    ]);
  });

  it('malformed percent-encoding and odd bytes in paths and queries: 4xx', async () => {
    await rejects([
      ['bad utf-8 user id', 'GET', '/users/%ED%A0%80', {}, [404, 'IDENT_USER_NOT_FOUND']],
      ['truncated escape', 'GET', '/clients/%E0%A4%A', {}, [404, 'IDENT_CLIENT_NOT_FOUND']],
      ['bare percent', 'GET', '/clients/%', {}, [404, 'IDENT_CLIENT_NOT_FOUND']],
      ['bad rs id', 'DELETE', '/resource-servers/%FF', {}, [404, 'IDENT_RESOURCE_SERVER_NOT_FOUND']],
    ]);
    // Invalid UTF-8 in a search decodes to U+FFFD: a plain search.
    for (const q of ['search=%ED%A0%80', 'search=%FF']) {
      const res = await api.get(`/users?${q}`);
      assert.equal(res.status, 200, `${q}: ${res.text}`);
      assert.ok(Array.isArray(res.body.data));
    }
    // Wildcards and quotes are literals: nothing matches them.
    for (const q of ['search=%', 'search=%25', 'search=%5C', 'search=_', 'search=\'%20or%201=1--']) {
      const res = await api.get(`/users?${q}`);
      assert.equal(res.status, 200, `${q}: ${res.text}`);
      assert.equal(res.body.total, 0, q);
    }
  });

  it('very long strings (10k characters): 400, and 404 for ids', async () => {
    const long = 'x'.repeat(10_000);
    await rejects([
      ['email', 'POST', '/users', { json: { email: `${long}@x.test` } }, [400, 'IDENT_VALIDATION']],
      ['givenName', 'POST', '/users', { json: { email: uniqueEmail(), givenName: long } }, [400, 'IDENT_VALIDATION']],
      ['password', 'POST', '/users', { json: { email: uniqueEmail(), password: long } }, [400, 'IDENT_VALIDATION']],
      ['locale', 'PATCH', `/users/${user.id}`, { json: { locale: `en-${long}` } }, [400, 'IDENT_VALIDATION']],
      ['search', 'GET', `/users?search=${long}`, {}, [400, 'IDENT_VALIDATION']],
      ['client_name', 'POST', '/clients', { json: { ...machine, client_name: long } }, [400, 'IDENT_VALIDATION']],
      ['client_id', 'POST', '/clients', { json: { ...machine, client_id: long } }, [400, 'IDENT_VALIDATION']],
      ['redirect uri', 'POST', '/clients', { json: { redirect_uris: [`https://a.test/${long}`] } }, [400, 'IDENT_VALIDATION']],
      ['scope', 'POST', '/clients', { json: { ...machine, scope: long } }, [400, 'IDENT_VALIDATION']],
      ['rs identifier', 'POST', '/resource-servers', { json: { identifier: `https://l.test/${long}`, scopes: [] } }, [400, 'IDENT_VALIDATION']],
      ['rs name', 'POST', '/resource-servers', { json: { identifier: 'https://l.test', name: long, scopes: [] } }, [400, 'IDENT_VALIDATION']],
      ['rs scope', 'POST', '/resource-servers', { json: { identifier: 'https://l.test', scopes: [long] } }, [400, 'IDENT_VALIDATION']],
      ['idempotency key', 'POST', '/users', { json: { email: uniqueEmail() }, headers: { 'idempotency-key': long } }, [400, 'IDENT_VALIDATION']],
      ['user id', 'GET', `/users/${long}`, {}, [404, 'IDENT_USER_NOT_FOUND']],
      ['client id', 'GET', `/clients/${long}`, {}, [404, 'IDENT_CLIENT_NOT_FOUND']],
      ['rs id', 'PATCH', `/resource-servers/${long}`, { json: { name: 'x' } }, [404, 'IDENT_RESOURCE_SERVER_NOT_FOUND']],
    ]);
  });

  it('a resource identifier within the character limit but too many bytes for the index: 400', async () => {
    // 2,030 random CJK characters are ~6 kB of UTF-8: beyond what a PostgreSQL b-tree entry holds.
    const cjk = Array.from({ length: 2030 }, () => String.fromCharCode(0x4e00 + Math.floor(Math.random() * 20_000))).join('');
    await rejects([['cjk identifier', 'POST', '/resource-servers', { json: { identifier: `https://x.test/${cjk}`, scopes: [] } }, [400, 'IDENT_VALIDATION']]]);
  });

  it('bad Idempotency-Key headers: 400, nothing created', async () => {
    await rejects([
      ['too long', 'POST', '/users', { json: { email: uniqueEmail() }, headers: { 'idempotency-key': 'k'.repeat(256) } }, [400, 'IDENT_VALIDATION']],
      ['space', 'POST', '/users', { json: { email: uniqueEmail() }, headers: { 'idempotency-key': 'a b' } }, [400, 'IDENT_VALIDATION']],
      ['non-ascii', 'POST', '/clients', { json: machine, headers: { 'idempotency-key': Buffer.from('clé').toString('latin1') } }, [400, 'IDENT_VALIDATION']],
    ]);
  });

  it('page and pageSize out of range or not integers: 400; the limits themselves work', async () => {
    const bad = ['page=0', 'page=-1', 'page=1.5', 'page=abc', 'page=', 'page=1e400', 'page=99999999999999999999', 'page=1000001', 'page=1&page=2',
      'pageSize=0', 'pageSize=-5', 'pageSize=101', 'pageSize=1000000', 'pageSize=NaN', 'pageSize=Infinity', 'pageSize=2.5'];
    const cases: Parameters<typeof rejects>[0] = [];
    for (const list of ['/users', '/clients', '/resource-servers']) {
      for (const q of bad) cases.push([`${list}?${q}`, 'GET', `${list}?${q}`, {}, [400, 'IDENT_VALIDATION']]);
    }
    await rejects(cases);
    for (const list of ['/users', '/clients', '/resource-servers']) {
      const max = await api.get(`${list}?pageSize=100&page=1`);
      assert.equal(max.status, 200, max.text);
      assert.equal(max.body.pageSize, 100);
      const far = await api.get(`${list}?page=1000000&pageSize=100`);
      assert.equal(far.status, 200, far.text);
      assert.deepEqual(far.body.data, []);
      assert.ok(far.body.total >= 1);
    }
  });

  it('unknown status filter: 400 IDENT_VALIDATION', async () => {
    await rejects(['bogus', 'ACTIVE', 'Active', '', 'active,suspended', 'deleted'].map((s) => [
      `status=${s}`, 'GET', `/users?status=${encodeURIComponent(s)}`, {}, [400, 'IDENT_VALIDATION'],
    ]));
  });

  it('wrong HTTP method: 405 IDENT_METHOD_NOT_ALLOWED with the envelope and an Allow header; unknown routes: 404', async () => {
    const cases: [string, string, string][] = [
      ['PUT', '/users', 'GET'],
      ['DELETE', '/users', 'POST'],
      ['PATCH', '/users', 'GET'],
      ['PUT', `/users/${user.id}`, 'PATCH'],
      ['POST', `/users/${user.id}`, 'DELETE'],
      ['GET', `/users/${user.id}/suspend`, 'POST'],
      ['DELETE', `/users/${user.id}/reactivate`, 'POST'],
      ['PATCH', '/clients', 'POST'],
      ['POST', `/clients/${clientId}`, 'GET'],
      ['GET', `/clients/${clientId}/secret`, 'POST'],
      ['PUT', `/resource-servers/${rsId}`, 'DELETE'],
      ['DELETE', '/resource-servers', 'GET'],
      ['POST', '/openapi.json', 'GET'],
    ];
    const answers = await rejects(cases.map(([m, p]) => [`${m} ${p}`, m, p, m === 'GET' || m === 'DELETE' ? {} : { json: {} }, [405, 'IDENT_METHOD_NOT_ALLOWED']]));
    answers.forEach((res, i) => assert.ok((res.headers.get('allow') ?? '').split(/,\s*/).includes(cases[i]![2]), `Allow of ${cases[i]![0]} ${cases[i]![1]}`));
    // Without a token too: the method is checked by the router, the envelope is the same.
    assertError(await api.call('PUT', '/users', { token: null, json: {} }), 405, 'IDENT_METHOD_NOT_ALLOWED');
    await rejects([
      ['unknown collection', 'GET', '/groups', {}, [404, 'IDENT_NOT_FOUND']],
      ['unknown sub-resource', 'POST', `/users/${user.id}/promote`, {}, [404, 'IDENT_NOT_FOUND']],
      ['another version', 'GET', '/../v2/users', {}, [404, 'IDENT_NOT_FOUND']],
    ]);
  });

  it('the admin audience cannot be taken by a resource server', async () => {
    await rejects([['admin audience', 'POST', '/resource-servers', { json: { identifier: adminAudience(ts.issuer), scopes: ['iam.users:read'] } }]]);
  });

  it('after the battery: the seed records are as they were and nothing answered 500', async () => {
    const got = await api.get(`/users/${user.id}`);
    assert.equal(got.body.givenName, 'Input');
    assert.equal(got.body.email, user.email);
    assert.equal((await api.get(`/clients/${clientId}`)).body.client_name, 'input client');
    assert.deepEqual((await api.get(`/resource-servers/${rsId}`)).body.scopes, ['a']);
  });
});
