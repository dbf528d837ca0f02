import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { HttpBrowser } from '../helpers/browser-http.ts';
import { assertOneLineError, cleanEnv, finished, spawnIdp } from '../helpers/cli.ts';
import { submitLogin, uniqueEmail } from '../helpers/rp.ts';
import { freePort, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

const ADMIN_ID = 'cli-admin';
const ADMIN_SECRET = randomBytes(32).toString('base64url');
const DEMO_EMAIL = 'demo@example.test';


/** Resolves with everything `stream` printed once `pattern` matches; fails after the deadline. */
function waitForOutput(stream: NodeJS.ReadableStream, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms; got:\n${text}`)), timeoutMs);
    stream.on('data', (d) => {
      text += d;
      if (pattern.test(text)) {
        clearTimeout(timer);
        resolve(text);
      }
    });
  });
}

describe('the idp CLI against the admin API', () => {
  let ts: TestServer;
  let env: NodeJS.ProcessEnv;
  const idp = (args: string[], extraEnv: Record<string, string> = {}) =>
    finished(spawnIdp(args, { ...env, ...extraEnv }), 60_000);
  const idpJson = async <T = any>(args: string[]): Promise<T> => {
    const r = await idp([...args, '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  };

  before(async () => {
    ts = await startTestServer({ BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_SECRET });
    env = cleanEnv({ IDP_ISSUER: ts.issuer, IDP_CLIENT_ID: ADMIN_ID, IDP_CLIENT_SECRET: ADMIN_SECRET, LOG_LEVEL: 'silent' });
  });
  after(() => stopAndDestroy(ts));

  it('clients create, list, get and delete', async () => {
    // Other tests of this file create clients too: count from what is there now, whatever ran before.
    const totalBefore = (await idpJson(['clients', 'list', '--page-size', '1'])).total as number;
    const confidential = await idpJson([
      'clients', 'create', '--name', 'Web app',
      '--redirect-uri', 'https://app.example.test/cb', '--redirect-uri', 'https://app.example.test/cb2',
      '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', '--first-party',
    ]);
    assert.equal(confidential.client_name, 'Web app');
    assert.deepEqual(confidential.redirect_uris, ['https://app.example.test/cb', 'https://app.example.test/cb2']);
    assert.deepEqual(confidential.grant_types, ['authorization_code', 'refresh_token']);
    assert.equal(confidential.first_party, true);
    assert.equal(confidential.token_endpoint_auth_method, 'client_secret_basic');
    assert.ok(typeof confidential.client_secret === 'string' && confidential.client_secret.length >= 32);

    const pub = await idpJson(['clients', 'create', '--id', 'cli-spa', '--public', '--redirect-uri', 'http://localhost:8080/cb']);
    assert.equal(pub.client_id, 'cli-spa');
    assert.equal(pub.token_endpoint_auth_method, 'none');
    assert.equal(pub.client_secret, undefined);

    const machine = await idpJson([
      'clients', 'create', '--grant-type', 'client_credentials',
      '--metadata', JSON.stringify({ client_name: 'Machine', scope: 'iam.users:read' }),
    ]);
    assert.equal(machine.client_name, 'Machine');
    assert.deepEqual(machine.grant_types, ['client_credentials']);
    assert.equal(machine.scope, 'iam.users:read');

    const list = await idpJson(['clients', 'list', '--page-size', '100']);
    const ids = list.data.map((c: { client_id: string }) => c.client_id);
    for (const id of [ADMIN_ID, confidential.client_id, 'cli-spa', machine.client_id]) assert.ok(ids.includes(id), id);
    assert.equal(list.total, totalBefore + 3, 'the three made here are counted');
    assert.ok(ids.includes('account-console'));
    assert.equal(list.data.some((c: Record<string, unknown>) => 'client_secret' in c), false);

    const table = await idp(['clients', 'list']);
    assert.equal(table.code, 0, table.stderr);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    assert.match(header!, /^CLIENT ID\s+NAME\s+AUTH METHOD\s+GRANT TYPES/);
    assert.equal(rows.length, 5);
    assert.ok(rows.some((r) => /^cli-spa\s+-\s+none\s+authorization_code\s/.test(r)), table.stdout);

    const got = await idpJson(['clients', 'get', 'cli-spa']);
    assert.deepEqual(got.redirect_uris, ['http://localhost:8080/cb']);
    const gotText = await idp(['clients', 'get', confidential.client_id]);
    assert.match(gotText.stdout, /^client_name\s+Web app$/m);

    const deleted = await idp(['clients', 'delete', 'cli-spa']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, /client cli-spa deleted/);
    const gone = await idp(['clients', 'get', 'cli-spa']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /IDENT_CLIENT_NOT_FOUND/);
    assertOneLineError(gone);
  });

  it('built-in clients: delete says why it is refused; a client lacking admin scopes sees only the clients within them', async () => {
    const refused = await idp(['clients', 'delete', ADMIN_ID]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /IDENT_CLIENT_BUILT_IN: the client cli-admin is built in \(the bootstrap admin client, set by BOOTSTRAP_ADMIN_CLIENT_ID/);
    assertOneLineError(refused);
    const consoleClient = await idp(['clients', 'delete', 'account-console']);
    assert.equal(consoleClient.code, 1);
    assert.match(consoleClient.stderr, /IDENT_CLIENT_BUILT_IN: the client account-console is built in/);
    assert.equal((await idpJson(['clients', 'get', ADMIN_ID])).client_id, ADMIN_ID, 'the CLI still works with its credentials');

    // A client holding only iam.clients:read: the CLI asks for the scopes it has, and the server
    // shows it only the clients whose admin scopes it holds.
    const reader = await ts.server.services.clients.register(DEFAULT_SCOPE, {
      metadata: { grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'iam.clients:read' },
    });
    const asReader = { IDP_CLIENT_ID: reader.client_id, IDP_CLIENT_SECRET: reader.client_secret as string };
    const list = await idp(['clients', 'list', '--json', '--page-size', '100'], asReader);
    assert.equal(list.code, 0, list.stderr);
    const ids = (JSON.parse(list.stdout) as { data: { client_id: string }[] }).data.map((c) => c.client_id);
    assert.ok(ids.includes(reader.client_id) && ids.includes('account-console'), list.stdout);
    assert.ok(!ids.includes(ADMIN_ID), 'the bootstrap admin client is out of its reach');
    const got = await idp(['clients', 'get', ADMIN_ID], asReader);
    assert.equal(got.code, 1);
    assert.match(got.stderr, /IDENT_FORBIDDEN: the client cli-admin is registered with admin scopes this token lacks: iam\.clients:create/);
  });

  it('resource-servers create and list', async () => {
    const rs = await idpJson([
      'resource-servers', 'create', '--identifier', 'https://api.example.test/orders',
      '--scope', 'orders:read', '--scope', 'orders:write', '--name', 'Orders', '--format', 'opaque',
    ]);
    assert.equal(rs.identifier, 'https://api.example.test/orders');
    assert.deepEqual(rs.scopes, ['orders:read', 'orders:write']);
    assert.equal(rs.accessTokenFormat, 'opaque');

    const list = await idpJson(['resource-servers', 'list']);
    assert.ok(list.data.some((r: { id: string }) => r.id === rs.id));
    const table = await idp(['resource-servers', 'list']);
    assert.match(table.stdout, /^ID\s+IDENTIFIER\s+NAME\s+FORMAT/);
    assert.match(table.stdout, /https:\/\/api\.example\.test\/orders\s+Orders\s+opaque/);

    const bad = await idp(['resource-servers', 'create', '--identifier', 'https://x.example.test', '--format', 'xml']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--format must be one of jwt, opaque/);
  });

  it("the README's machine client: a resource server, a client granted read there, and its token", async () => {
    const rs = await idp(['resource-servers', 'create', '--identifier', 'https://api.example', '--scope', 'read', '--scope', 'write']);
    assert.equal(rs.code, 0, rs.stderr);
    const created = await idpJson(['clients', 'create', '--name', 'Nightly job', '--grant-type', 'client_credentials', '--resource-scope', 'https://api.example=read']);
    assert.deepEqual(created.resource_scopes, { 'https://api.example': 'read' });
    // The README's curl line.
    const token = (scope: string) => fetch(new URL('/token', ts.issuer), {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${created.client_id}:${created.client_secret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource: 'https://api.example' }),
    }).then(async (r) => ({ status: r.status, body: await r.json() as Record<string, string> }));
    const granted = await token('read');
    assert.equal(granted.status, 200, JSON.stringify(granted.body));
    assert.equal(granted.body.scope, 'read');
    assert.equal((await token('read write')).body.error, 'invalid_scope');

    // The derived update takes the same <resource>=<scopes> form, repeated; a repeated resource collects its scopes.
    const updated = await idpJson(['clients', 'update', created.client_id, '--resource-scopes', 'https://api.example=read', '--resource-scopes', 'https://api.example=write']);
    assert.deepEqual(updated.resource_scopes, { 'https://api.example': 'read write' });
    assert.equal((await token('read write')).body.scope, 'read write');

    const unknown = await idp(['clients', 'create', '--grant-type', 'client_credentials', '--resource-scope', 'https://nowhere.example=read']);
    assert.equal(unknown.code, 1);
    assertOneLineError(unknown);
    assert.match(unknown.stderr, /IDENT_VALIDATION.*not a registered resource server/);
    const malformed = await idp(['clients', 'create', '--grant-type', 'client_credentials', '--resource-scope', 'https://api.example']);
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /--resource-scope takes <key>=<value>/);
  });

  it('users create, list, suspend and reactivate', async () => {
    const email = uniqueEmail('cli');
    const user = await idpJson([
      'users', 'create', '--email', email, '--password', 'correct horse battery staple',
      '--given-name', 'Ada', '--family-name', 'Lovelace',
    ]);
    assert.equal(user.email, email);
    assert.equal(user.givenName, 'Ada');
    assert.equal(user.status, 'active');

    const found = await idpJson(['users', 'list', '--search', email]);
    assert.equal(found.total, 1);
    assert.equal(found.data[0].id, user.id);

    const table = await idp(['users', 'list', '--search', email]);
    assert.equal(table.code, 0, table.stderr);
    const [header, row] = table.stdout.trimEnd().split('\n');
    assert.match(header!, /^ID\s+EMAIL\s+NAME\s+STATUS\s+VERIFIED\s+LAST LOGIN$/);
    assert.match(row!, new RegExp(`^${user.id}\\s+${email.replace(/\./g, '\\.')}\\s+Ada Lovelace\\s+active\\s`));

    const suspended = await idp(['users', 'suspend', user.id]);
    assert.equal(suspended.code, 0, suspended.stderr);
    assert.match(suspended.stdout, /is suspended/);
    assert.equal((await ts.server.services.userAdmin.get(DEFAULT_SCOPE, user.id)).status, 'suspended');
    const onlySuspended = await idpJson(['users', 'list', '--status', 'suspended']);
    assert.deepEqual(onlySuspended.data.map((u: { id: string }) => u.id), [user.id]);

    // By email, too.
    const reactivated = await idpJson(['users', 'reactivate', email]);
    assert.equal(reactivated.status, 'active');
    assert.equal((await ts.server.services.userAdmin.get(DEFAULT_SCOPE, user.id)).status, 'active');
  });

  it('tenants create, list and get; --tenant (or IDP_TENANT) acts in a tenant', async () => {
    const slug = `cli-${randomBytes(4).toString('hex')}`;
    const tenant = await idpJson(['tenants', 'create', '--name', 'CLI tenant', '--slug', slug]);
    assert.equal(tenant.slug, slug);
    assert.equal(tenant.name, 'CLI tenant');
    const listed = await idpJson(['tenants', 'list', '--page-size', '100']);
    assert.ok(listed.data.some((t: { id: string }) => t.id === tenant.id));
    assert.equal((await idpJson(['tenants', 'get', slug])).id, tenant.id);

    const email = uniqueEmail('cli-tenant');
    const user = await idpJson(['users', 'create', '--email', email, '--tenant', slug]);
    assert.equal((await ts.server.services.db('users').where({ id: user.id }).first()).tenant_id, tenant.id);
    assert.equal((await idpJson(['users', 'list', '--search', email])).total, 0, 'not in the default tenant');
    assert.equal((await idpJson(['--tenant', tenant.id, 'users', 'list', '--search', email])).total, 1);
    const viaEnv = await idp(['users', 'list', '--search', email, '--json'], { IDP_TENANT: slug });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(JSON.parse(viaEnv.stdout).total, 1);

    const notEmpty = await idp(['tenants', 'delete', slug]);
    assert.equal(notEmpty.code, 1);
    assertOneLineError(notEmpty);
    assert.match(notEmpty.stderr, /IDENT_TENANT_NOT_EMPTY/);
    const unknown = await idp(['users', 'list', '--tenant', 'no-such-tenant']);
    assert.equal(unknown.code, 1);
    assertOneLineError(unknown);
    assert.match(unknown.stderr, /IDENT_TENANT_NOT_FOUND/);
  });

  it('api-keys create prints the key once; list never shows it; rotate and revoke', async () => {
    const made = await idp(['api-keys', 'create', '--name', 'deploy', '--scopes', 'iam.users:read', '--scopes', 'iam.clients:read']);
    assert.equal(made.code, 0, made.stderr);
    const key = /idp_[0-9a-f]{32}_[A-Za-z0-9_-]{43}/.exec(made.stdout)?.[0];
    assert.ok(key, made.stdout);
    assert.equal(made.stdout.split(key).length - 1, 1, 'the key is printed once');
    assert.match(made.stdout + made.stderr, /API key is shown only now/);
    const id = /^id\s+(\S+)$/m.exec(made.stdout)?.[1];
    assert.ok(id, made.stdout);
    const users = await fetch(new URL('/api/v1/users?pageSize=1', ts.issuer), { headers: { authorization: `Bearer ${key}` } });
    assert.equal(users.status, 200);

    const listed = await idp(['api-keys', 'list']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(id!));
    assert.ok(!listed.stdout.includes(key.slice(38)), 'no key in the list');

    const rotated = await idpJson(['api-keys', 'rotate', id!, '--overlap-seconds', '0']);
    assert.match(rotated.key, /^idp_/);
    assert.equal(rotated.previousKeyExpiresAt, null);
    const revoked = await idp(['api-keys', 'revoke', id!]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const after = await fetch(new URL('/api/v1/users?pageSize=1', ts.issuer), { headers: { authorization: `Bearer ${rotated.key}` } });
    assert.equal(after.status, 401);
  });

  it('an API error exits 1 with its code and message on one line', async () => {
    const email = uniqueEmail('dup');
    assert.equal((await idp(['users', 'create', '--email', email])).code, 0);
    const dup = await idp(['users', 'create', '--email', email]);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /IDENT_EMAIL_DUPLICATE: a user with this email already exists \(HTTP 409, request [\w-]+\)/);
    assertOneLineError(dup);
    assert.equal(dup.stdout, '');
  });

  it('a wrong secret, an unreachable server and missing credentials say so', async () => {
    const wrong = await idp(['users', 'list'], { IDP_CLIENT_SECRET: 'not-the-secret' });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /invalid_client: .*check --client-id and --client-secret/);
    assertOneLineError(wrong);

    const port = await freePort();
    const refused = await idp(['clients', 'list', '--issuer', `http://127.0.0.1:${port}`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /cannot connect to http:\/\/127\.0\.0\.1:\d+: connection refused/);
    assertOneLineError(refused);

    const none = await finished(spawnIdp(['users', 'list'], cleanEnv({ IDP_ISSUER: ts.issuer })), 30_000);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /missing credentials: set --client-id .* and --client-secret/);
    assertOneLineError(none);

    // The server's own settings are the fallback.
    const fallback = await finished(
      spawnIdp(['users', 'list', '--json'], cleanEnv({ ISSUER: ts.issuer, BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_ID, BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_SECRET })),
      30_000,
    );
    assert.equal(fallback.code, 0, fallback.stderr);
  });

  it('wrong usage exits 2 with one line', async () => {
    const unknown = await idp(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    assertOneLineError(unknown);

    for (const [args, message] of [
      [['clients', 'frob'], /unknown command "clients frob"/],
      [['clients', 'create', '--bogus'], /unknown option '--bogus'/],
      [['clients', 'get'], /missing <client-id>/],
      [['clients', 'create', '--metadata', '[1]'], /--metadata must be a JSON object/],
      [['users', 'list', '--status', 'gone'], /--status must be one of active, suspended, deactivated/],
      [['users', 'list', '--page', 'two'], /--page must be a whole number/],
    ] as const) {
      const r = await idp([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assertOneLineError(r);
    }

    const help = await idp(['users', 'create', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /usage: idp users create \[options\]/);
    assert.match(help.stdout, /--given-name <name>/);
  });

  /** Runs `idp demo`, signs in through the real login page as a browser would, returns the CLI's result. */
  async function demo(extra: string[] = []) {
    const port = await freePort();
    const child = spawnIdp(['demo', '--port', String(port), '--timeout', '60', ...extra], env);
    const done = finished(child, 90_000);
    // With --json the instructions are on stderr, so stdout stays one JSON document.
    const instructions = await waitForOutput(extra.includes('--json') ? child.stderr : child.stdout, /Waiting for the sign-in/, 60_000);
    const authUrl = /^\s+(http:\/\/\S+\/auth\?\S+)$/m.exec(instructions)?.[1];
    const password = /^Password\s+(\S+)$/m.exec(instructions)?.[1];
    assert.ok(authUrl && password, instructions);
    const url = new URL(authUrl);
    assert.equal(url.searchParams.get('client_id'), 'idp-demo');
    assert.equal(url.searchParams.get('redirect_uri'), `http://127.0.0.1:${port}/callback`);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(url.searchParams.get('scope'), 'openid profile email');
    assert.ok(url.searchParams.get('state') && url.searchParams.get('nonce'));

    const browser = new HttpBrowser();
    const login = await browser.follow(url);
    assert.equal(login.res.status, 200);
    const res = await submitLogin(browser, login.url, await login.res.text(), DEMO_EMAIL, password);
    assert.equal(res.status, 303, `login should redirect, got ${res.status}`);
    // Followed all the way: the last hop is the CLI's own callback server.
    const callback = await browser.follow(new URL(res.headers.get('location')!, login.url));
    assert.equal(callback.url.origin + callback.url.pathname, `http://127.0.0.1:${port}/callback`);
    assert.equal(callback.res.status, 200);
    assert.match(await callback.res.text(), /Signed in/);

    const result = await done;
    assert.equal(result.code, 0, result.stderr);
    return { ...result, instructions };
  }

  it('idp demo creates a demo client and user, and prints the claims and tokens of a real sign-in', async () => {
    const first = await demo();
    assert.match(first.instructions, /Demo client\s+idp-demo \(created\)/);
    assert.match(first.instructions, /Demo user\s+demo@example\.test \(created\)/);
    const idToken = /ID token claims:\n([\s\S]*?)\n\n/.exec(first.stdout)?.[1] ?? '';
    const userinfo = /UserInfo claims:\n([\s\S]*?)\n\n/.exec(first.stdout)?.[1] ?? '';
    const sub = /^\s+sub\s+(\S+)$/m.exec(idToken)?.[1];
    assert.ok(sub, first.stdout);
    assert.match(idToken, /^\s+aud\s+idp-demo$/m);
    assert.match(idToken, new RegExp(`^\\s+iss\\s+${ts.issuer.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(userinfo, new RegExp(`^\\s+sub\\s+${sub}$`, 'm'));
    assert.match(userinfo, /^\s+email\s+demo@example\.test$/m);
    assert.match(first.stdout, /^\s+access_token\s+\S+$/m);
    assert.match(first.stdout, /^\s+id_token\s+eyJ\S+$/m);

    const demoUser = await idpJson(['users', 'get', DEMO_EMAIL]);
    assert.equal(demoUser.id, sub);
    const client = await idpJson(['clients', 'get', 'idp-demo']);
    assert.equal(client.token_endpoint_auth_method, 'none');

    // Again, on another port and with --json: both are reused, and the new password works.
    const second = await demo(['--json']);
    assert.match(second.instructions, /Demo client\s+idp-demo \(reused, redirect URI set to/);
    assert.match(second.instructions, /Demo user\s+demo@example\.test \(reused, new password\)/);
    const out = JSON.parse(second.stdout);
    assert.equal(out.claims.sub, sub);
    assert.equal(out.claims.aud, 'idp-demo');
    assert.equal(out.userinfo.email, DEMO_EMAIL);
    assert.equal(out.tokens.token_type, 'Bearer');
    assert.equal((await idpJson(['clients', 'list', '--page-size', '100'])).data.filter((c: { client_id: string }) => c.client_id === 'idp-demo').length, 1);
  });

  it('idp demo gives up after --timeout, and refuses a busy port', async () => {
    const port = await freePort();
    const timedOut = await idp(['demo', '--port', String(port), '--timeout', '1']);
    assert.equal(timedOut.code, 1);
    assert.match(timedOut.stderr, /no sign-in came back within 1 s/);
    assertOneLineError(timedOut);

    const busy = await idp(['demo', '--port', String(ts.port)]);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, new RegExp(`port ${ts.port} on 127\\.0\\.0\\.1 is in use`));
  });
});
