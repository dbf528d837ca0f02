import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { commands } from '../../src/cli/commands/index.ts';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, startAdminServer, tokenRequest } from '../helpers/admin.ts';
import { assertOneLineError, cleanEnv, finished, root, spawnIdp } from '../helpers/cli.ts';
import { uniqueEmail } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { DEFAULT_SCOPE } from '../../src/domain/tenants/tenant-scope.ts';

const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;

describe('the idp CLI covers the whole admin API', () => {
  let ts: TestServer;
  let env: NodeJS.ProcessEnv;
  const idp = (args: string[]) => finished(spawnIdp(args, env), 60_000);
  const idpJson = async <T = any>(args: string[]): Promise<T> => {
    const r = await idp([...args, '--json']);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  before(async () => {
    ts = await startAdminServer();
    env = cleanEnv({ IDP_ISSUER: ts.issuer, IDP_CLIENT_ID: ADMIN_CLIENT_ID, IDP_CLIENT_SECRET: ADMIN_CLIENT_SECRET, LOG_LEVEL: 'silent' });
  });
  after(() => stopAndDestroy(ts));

  it('every operation the server serves under /api/v1 with an admin scope has an idp command, listed in the help', async () => {
    const doc = (await (await fetch(new URL('/api/v1/openapi.json', ts.issuer))).json()) as {
      paths: Record<string, Record<string, { security: { bearer?: string[] }[]; 'x-idp-command'?: string }>>;
    };
    const served = Object.entries(doc.paths).flatMap(([p, methods]) =>
      Object.entries(methods)
        .filter(([, op]) => op.security.some((s) => s.bearer))
        .map(([method, op]) => ({ key: `${method} ${p.replace(/^\/api\/v1/, '').replace(/\{(\w+)\}/g, ':$1')}`, documented: op['x-idp-command'] })),
    );
    assert.ok(served.length >= 25, `the admin API has its operations: ${served.length}`);
    const byOperation = new Map<string, string>(
      commands.flatMap((c) => (c.scopes && c.operation ? [[`${c.operation.method} ${c.operation.path}`, c.name] as const] : [])),
    );
    const help = await idp(['help']);
    assert.equal(help.code, 0, help.stderr);
    for (const { key, documented } of served) {
      const name = byOperation.get(key);
      assert.ok(name, `no idp command calls ${key}`);
      assert.equal(documented, `idp ${name}`, `the OpenAPI document names the command of ${key}`);
      assert.match(help.stdout, new RegExp(`^  ${name} `, 'm'), `idp help lists ${name}`);
    }
    assert.equal(byOperation.size, served.length, 'and no command calls an operation the server lacks');
  });

  it('clients update and rotate-secret: the old secret stops working, the new one works', async () => {
    const created = await idpJson(['clients', 'create', '--grant-type', 'client_credentials', '--name', 'Before']);
    const updated = await idpJson([
      'clients', 'update', created.client_id, '--client-name', 'After', '--body', JSON.stringify({ scope: 'openid' }),
    ]);
    assert.equal(updated.client_name, 'After');
    assert.equal(updated.scope, 'openid');
    assert.deepEqual(updated.grant_types, ['client_credentials'], 'merged over the current metadata');

    const rotated = await idp(['clients', 'rotate-secret', created.client_id]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const secret = /^client_secret\s+(\S+)$/m.exec(rotated.stdout)?.[1];
    assert.ok(secret && secret !== created.client_secret, rotated.stdout);
    assert.match(rotated.stderr, /The client secret is shown only now/);
    const old = await tokenRequest(ts, { id: created.client_id, secret: created.client_secret }, { grant_type: 'client_credentials' });
    assert.equal(old.status, 401);
    assert.equal((await tokenRequest(ts, { id: created.client_id, secret }, { grant_type: 'client_credentials' })).status, 200);

    const nothing = await idp(['clients', 'update', created.client_id]);
    assert.equal(nothing.code, 2);
    assert.match(nothing.stderr, /nothing to change: give an option or --body/);
    assertOneLineError(nothing);
  });

  it('users update (by email, --no-flag sends false), unlock, reset-mfa and delete', async () => {
    const email = uniqueEmail('cli-update');
    const user = await idpJson(['users', 'create', '--email', email, '--verified']);
    assert.equal(user.emailVerified, true);
    const updated = await idpJson(['users', 'update', email, '--given-name', 'Grace', '--no-email-verified', '--locale', 'vi']);
    assert.equal(updated.id, user.id);
    assert.equal(updated.givenName, 'Grace');
    assert.equal(updated.emailVerified, false);
    assert.equal(updated.locale, 'vi');

    const unlocked = await idpJson(['users', 'unlock', user.id]);
    assert.equal(unlocked.lock.failedAttempts, 0);
    const reset = await idpJson(['users', 'reset-mfa', email]);
    assert.deepEqual(reset.mfa.factors ?? [], []);

    const deleted = await idp(['users', 'delete', user.id]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, /^status\s+deactivated$/m);
    assert.equal((await ts.server.services.userAdmin.get(DEFAULT_SCOPE, user.id)).status, 'deactivated');

    const badNumber = await idp(['resource-servers', 'update', user.id, '--access-token-ttl', 'soon']);
    assert.equal(badNumber.code, 2);
    assert.match(badNumber.stderr, /--access-token-ttl must be a number/);
  });

  it('resource-servers get, update and delete', async () => {
    const rs = await idpJson(['resource-servers', 'create', '--identifier', `https://api.example.test/${Date.now()}`, '--scope', 'a:read']);
    const got = await idp(['resource-servers', 'get', rs.id]);
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, new RegExp(`^identifier\\s+${rs.identifier.replace(/[./]/g, '\\$&')}$`, 'm'));
    const updated = await idpJson([
      'resource-servers', 'update', rs.id, '--name', 'Orders', '--scopes', 'a:read', '--scopes', 'a:write',
      '--access-token-format', 'opaque', '--access-token-ttl', '600',
    ]);
    assert.deepEqual([updated.name, updated.scopes, updated.accessTokenFormat, updated.accessTokenTtl], ['Orders', ['a:read', 'a:write'], 'opaque', 600]);
    // A body on standard input; the options override its fields.
    const piped = spawnIdp(['resource-servers', 'update', rs.id, '--body', '@-', '--access-token-ttl', '900', '--json'], env);
    piped.stdin.end(JSON.stringify({ name: 'From stdin', accessTokenTtl: 60 }));
    const fromStdin = await finished(piped, 60_000);
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.deepEqual([JSON.parse(fromStdin.stdout).name, JSON.parse(fromStdin.stdout).accessTokenTtl], ['From stdin', 900]);

    const deleted = await idp(['resource-servers', 'delete', rs.id]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, `resource server ${rs.id} deleted\n`);
    const gone = await idp(['resource-servers', 'get', rs.id]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /IDENT_RESOURCE_SERVER_NOT_FOUND/);
    assertOneLineError(gone);
  });

  it('identity-providers list and get answer through the generated commands', async () => {
    const list = await idpJson(['identity-providers', 'list']);
    assert.equal(list.total, 0);
    const empty = await idp(['identity-providers', 'list']);
    assert.equal(empty.code, 0, empty.stderr);
    assert.match(empty.stderr, /no results/);
    const missing = await idp(['identity-providers', 'get', 'no-such-provider']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /IDENT_IDP_NOT_FOUND/);
  });

  it('users create says whether the email is verified; a refused password says why', async () => {
    const unverified = await idp(['users', 'create', '--email', uniqueEmail('cli-unverified')]);
    assert.equal(unverified.code, 0, unverified.stderr);
    assert.match(unverified.stdout, /^emailVerified\s+false$/m);
    assert.match(unverified.stderr, /The email address is not verified; --verified marks it verified/);
    const verified = await idp(['users', 'create', '--email', uniqueEmail('cli-verified'), '--verified']);
    assert.match(verified.stdout, /^emailVerified\s+true$/m);
    assert.match(verified.stderr, /The email address is marked verified/);

    const weak = await idp(['users', 'create', '--email', uniqueEmail('cli-weak'), '--password', 'password1']);
    assert.equal(weak.code, 1);
    assert.match(weak.stderr, /^idp: IDENT_PASSWORD_POLICY: the password is too easy to guess: \S.* \(HTTP 400, request /);
    assertOneLineError(weak);
  });

  it('a token asked for without resource (or for another resource) is refused by the admin API with what to ask for', async () => {
    const bootstrap = { id: ADMIN_CLIENT_ID, secret: ADMIN_CLIENT_SECRET };
    const usersWith = (token: string) => fetch(new URL('/api/v1/users', ts.issuer), { headers: { authorization: `Bearer ${token}` } });
    const expected = `resource=${adminAudience(ts.issuer)}`;

    const opaque = await tokenRequest(ts, bootstrap, { grant_type: 'client_credentials' });
    assert.equal(opaque.status, 200, JSON.stringify(opaque.body));
    const refused = await usersWith(opaque.body.access_token);
    assert.equal(refused.status, 401);
    const body = (await refused.json()) as { error: string; message: string };
    assert.equal(body.error, 'IDENT_UNAUTHENTICATED');
    assert.ok(body.message.includes(expected), body.message);
    assert.match(body.message, /issued without resource/);

    const rs = await idpJson(['resource-servers', 'create', '--identifier', `https://other.example.test/${Date.now()}`, '--scope', 'o:read']);
    const machine = await idpJson(['clients', 'create', '--grant-type', 'client_credentials', '--resource-scope', `${rs.identifier}=o:read`]);
    const other = await tokenRequest(ts, { id: machine.client_id, secret: machine.client_secret }, { grant_type: 'client_credentials', resource: rs.identifier, scope: 'o:read' });
    assert.equal(other.status, 200, JSON.stringify(other.body));
    const wrongAudience = (await (await usersWith(other.body.access_token)).json()) as { message: string };
    assert.match(wrongAudience.message, /^the access token is not for the admin API/);
    assert.ok(wrongAudience.message.includes(expected), wrongAudience.message);

    const garbage = (await (await usersWith('a.b.c')).json()) as { message: string };
    assert.equal(garbage.message, 'the access token is invalid or expired', 'a token we did not sign is not described');
  });
});

describe('idp --version and the launcher', () => {
  const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = cleanEnv({})) =>
    finished(spawn(cmd, args, { cwd: root, env, stdio: 'pipe' }), 90_000);

  it('idp --version prints package.json\'s version', async () => {
    for (const flag of ['--version', '-V']) {
      const r = await run(process.execPath, ['src/cli/main.ts', flag]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `idp ${version} (Node ${process.version})\n`);
    }
    const help = await run(process.execPath, ['src/cli/main.ts', 'help']);
    assert.match(help.stdout, /"idp --version" prints the version/);
  });

  it('the bin runs under an older Node by handing over to the bundled one', async (t) => {
    // `npm test` puts the bundled Node first on PATH: look for the machine's own one too.
    const older = ['node', '/usr/bin/node', '/usr/local/bin/node'].find((candidate) => {
      const probe = spawnSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' });
      return probe.status === 0 && Number(probe.stdout.split('.')[0]) < 23;
    });
    if (!older) return t.skip('no Node older than 23 on this machine');
    const r = await run(older, ['bin/idp.js', '--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^idp ${version.replace(/\./g, '\\.')} \\(Node v(2[3-9]|[3-9]\\d)\\.`));
    const failing = await run(older, ['bin/idp.js', 'frobnicate']);
    assert.equal(failing.code, 2, 'the exit status comes through');
  });

  it('npm start and npm test refuse a Node that is too old in one line (package.json has no engines field to warn about)', async () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines?: unknown; scripts: Record<string, string> };
    assert.equal(pkg.engines, undefined);
    assert.match(pkg.scripts.prestart!, /^node bin\/check-node\.js 22 && /);
    assert.match(pkg.scripts.pretest!, /^node bin\/check-node\.js 24$/);
    const ok = await run(process.execPath, ['bin/check-node.js', '22']);
    assert.equal(ok.code, 0, ok.stderr);
    const tooOld = await run(process.execPath, ['bin/check-node.js', '99']);
    assert.equal(tooOld.code, 1);
    assert.equal(tooOld.stderr.trim().split('\n').length, 1, tooOld.stderr);
    assert.match(tooOld.stderr, new RegExp(`^idp needs Node\\.js 99 or newer, this is ${process.version.replace(/\./g, '\\.')}: `));
  });

  it('npx idp prints no EBADENGINE warning, even when npx runs on the machine\'s own older Node', async (t) => {
    // The machine's PATH, without the bundled Node that `npm test` puts first on it: npx and npm
    // then run on the system Node (20 on this machine), which is where the warning came from.
    const bundled = path.join(root, 'node_modules/.bin');
    const systemPath = (process.env.PATH ?? '').split(path.delimiter).filter((dir) => path.resolve(dir) !== bundled);
    for (const withBundled of [false, true]) {
      const PATH = [...(withBundled ? [bundled] : []), ...systemPath].join(path.delimiter);
      const npx = spawnSync('npx', ['--version'], { encoding: 'utf8', env: { ...process.env, PATH } });
      if (npx.status !== 0) return t.skip('npx is not installed');
    }
    // A fresh npx cache: npx installs the project into it on first use, which is when npm checks
    // the engines.
    const cache = mkdtempSync(path.join(tmpdir(), 'idp-npx-'));
    try {
      for (const withBundled of [false, true]) {
        const env = cleanEnv({
          PATH: [...(withBundled ? [bundled] : []), ...systemPath].join(path.delimiter),
          npm_config_cache: cache,
          npm_config_update_notifier: 'false',
        });
        for (let i = 0; i < 2; i++) {
          const r = await run('npx', ['--offline', 'idp', '--version'], env);
          assert.equal(r.code, 0, r.stderr);
          assert.match(r.stdout, new RegExp(`^idp ${version.replace(/\./g, '\\.')} \\(Node v(2[4-9]|[3-9]\\d)\\.`));
          assert.doesNotMatch(r.stderr, /EBADENGINE|npm warn/i, `npx on ${withBundled ? 'the bundled' : "the machine's"} Node`);
        }
      }
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });
});
