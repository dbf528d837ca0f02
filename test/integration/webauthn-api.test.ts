import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AdminApi, adminToken, startAdminServer } from '../helpers/admin.ts';
import { createUser, registerClient, rpConfig, signIn } from '../helpers/rp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { callUserApi } from '../helpers/user-api.ts';

/**
 * The account API for security keys and passkeys: the registration options, the input checks and
 * refusals of /me/mfa/webauthn/register, and /me/devices. The browser ceremonies themselves are in
 * test/browser/webauthn.browser.test.ts; here a credential is stored as a registration stores it
 * (its factor row and its credential row) to check listing and removal.
 */
describe('account API: security keys and passkeys', () => {
  let ts: TestServer;
  let api: AdminApi;

  before(async () => {
    ts = await startAdminServer({ ME_API_RATE_LIMIT_PER_USER: '1000' });
    api = new AdminApi(ts, await adminToken(ts));
  });
  after(() => stopAndDestroy(ts));

  const call = (method: string, path: string, token: string, body?: unknown) => callUserApi(ts, method, path, token, body);

  async function tokenFor(user: { email: string; password: string }, firstParty: boolean) {
    const client = await registerClient(ts, { token_endpoint_auth_method: 'none', scope: 'openid email profile' }, firstParty);
    const { tokens } = await signIn(ts, await rpConfig(ts, client), user, { scope: 'openid', prompt: 'consent' });
    return tokens.access_token;
  }

  /** A credential as a completed registration leaves it: a confirmed webauthn factor and its credential row. */
  async function storedCredential(userId: string, name: string, discoverable: boolean): Promise<string> {
    const { repos, db } = ts.server.services;
    const id = randomUUID();
    await db.transaction(async (trx) => {
      await repos.mfaFactors.insert({ id, tenant_id: 'default', user_id: userId, type: 'webauthn', name, secret_sealed: null, confirmed_at: new Date() }, trx);
      await repos.webauthnCredentials.insert({
        factor_id: id, user_id: userId, credential_id: randomBytes(32).toString('base64url'), public_key: randomBytes(77).toString('base64url'),
        sign_count: 0, transports: 'usb,nfc', discoverable, backed_up: false, device_type: 'singleDevice', aaguid: randomUUID(),
      }, trx);
    });
    return id;
  }

  it('answers creation options for the issuer\'s host: a passkey must be discoverable and verify the user, a security key need not; the user\'s credentials are excluded', async () => {
    const user = await createUser(ts);
    const token = await tokenFor(user, true);
    const existing = await storedCredential(user.id, 'Old key', false);
    const passkey = await call('POST', '/api/v1/me/mfa/webauthn/register/options', token, { kind: 'passkey' });
    assert.equal(passkey.status, 200, JSON.stringify(passkey.body));
    assert.equal(passkey.body!.rp.id, new URL(ts.issuer).hostname);
    assert.deepEqual(
      { residentKey: passkey.body!.authenticatorSelection.residentKey, userVerification: passkey.body!.authenticatorSelection.userVerification },
      { residentKey: 'required', userVerification: 'required' },
    );
    assert.equal(passkey.body!.user.name, user.email);
    assert.equal(Buffer.from(passkey.body!.user.id, 'base64url').toString(), user.id, 'the user handle is the account id, not the address');
    assert.equal(passkey.body!.excludeCredentials.length, 1);
    assert.equal(passkey.headers.get('cache-control'), 'no-store');

    const key = await call('POST', '/api/v1/me/mfa/webauthn/register/options', token, { kind: 'security-key' });
    assert.equal(key.status, 200);
    assert.equal(key.body!.authenticatorSelection.residentKey, 'discouraged');
    assert.equal(key.body!.authenticatorSelection.userVerification, 'preferred');
    assert.notEqual(key.body!.challenge, passkey.body!.challenge);
    assert.ok(existing);
  });

  it('refuses malformed bodies (400 IDENT_VALIDATION) and answers that do not verify (400 IDENT_WEBAUTHN_INVALID), once per challenge', async () => {
    const user = await createUser(ts);
    const token = await tokenFor(user, true);
    for (const body of [{}, { kind: 'platform' }, { kind: 'passkey', extra: 1 }, [], { kind: ['passkey'] }]) {
      const res = await call('POST', '/api/v1/me/mfa/webauthn/register/options', token, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body!.error, 'IDENT_VALIDATION');
    }
    const shaped = {
      id: 'AAAA', rawId: 'AAAA', type: 'public-key', clientExtensionResults: {},
      response: { clientDataJSON: Buffer.from('{"type":"webauthn.create"}').toString('base64url'), attestationObject: 'AAAA' },
    };
    for (const body of [{ response: 'x' }, { response: { ...shaped, type: 'password' } }, { response: shaped, name: 'a\nb' }, { response: shaped, name: 'x'.repeat(65) }, { response: shaped, other: true }]) {
      const res = await call('POST', '/api/v1/me/mfa/webauthn/register', token, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body!.error, 'IDENT_VALIDATION');
    }
    // No registration under way.
    const early = await call('POST', '/api/v1/me/mfa/webauthn/register', token, { response: shaped });
    assert.equal(early.status, 400);
    assert.equal(early.body!.error, 'IDENT_WEBAUTHN_INVALID');

    assert.equal((await call('POST', '/api/v1/me/mfa/webauthn/register/options', token, { kind: 'passkey' })).status, 200);
    const forged = await call('POST', '/api/v1/me/mfa/webauthn/register', token, { response: shaped, name: 'Mine' });
    assert.equal(forged.status, 400);
    assert.equal(forged.body!.error, 'IDENT_WEBAUTHN_INVALID');
    assert.match(forged.body!.message, /does not verify/);
    const again = await call('POST', '/api/v1/me/mfa/webauthn/register', token, { response: shaped });
    assert.equal(again.body!.error, 'IDENT_WEBAUTHN_INVALID');
    assert.match(again.body!.message, /no registration/, 'the challenge was used up by the failed try');
    assert.deepEqual((await call('GET', '/api/v1/me/devices', token)).body, { data: [] });
  });

  it('refuses a third-party token on every WebAuthn route, like the other account-management routes', async () => {
    const user = await createUser(ts);
    const token = await tokenFor(user, false);
    const id = await storedCredential(user.id, 'Key', false);
    for (const [method, path, body] of [
      ['POST', '/api/v1/me/mfa/webauthn/register/options', { kind: 'passkey' }],
      ['POST', '/api/v1/me/mfa/webauthn/register', { response: {} }],
      ['GET', '/api/v1/me/devices', undefined],
      ['DELETE', `/api/v1/me/devices/${id}`, undefined],
    ] as const) {
      const res = await call(method, path, token, body);
      assert.equal(res.status, 403, `${method} ${path}`);
      assert.equal(res.body!.error, 'IDENT_FORBIDDEN');
    }
    assert.equal((await ts.server.services.webauthn.devices(user.id)).length, 1, 'nothing removed');
  });

  it('lists devices with name, kind and last use; removes only WebAuthn factors of the caller, with their credential; an operator reset removes them too', async () => {
    const user = await createUser(ts);
    // Recovery codes: a factor that is not a device (alone they do not make the sign-in ask for one).
    await ts.server.services.mfa.regenerateRecoveryCodes(user.id, undefined);
    const token = await tokenFor(user, true);
    const key = await storedCredential(user.id, 'Blue key', false);
    const passkey = await storedCredential(user.id, 'Phone', true);
    const recoveryId = (await ts.server.services.mfa.list(user.id)).find((f) => f.type === 'recovery')!.id;

    const devices = await call('GET', '/api/v1/me/devices', token);
    assert.equal(devices.status, 200);
    assert.deepEqual(
      devices.body!.data.map((d: Record<string, unknown>) => ({ id: d.id, name: d.name, kind: d.kind, transports: d.transports, backedUp: d.backedUp, lastUsedAt: d.lastUsedAt })),
      [
        { id: key, name: 'Blue key', kind: 'security-key', transports: ['usb', 'nfc'], backedUp: false, lastUsedAt: null },
        { id: passkey, name: 'Phone', kind: 'passkey', transports: ['usb', 'nfc'], backedUp: false, lastUsedAt: null },
      ],
    );
    const factors = (await call('GET', '/api/v1/me/mfa', token)).body!.data as Array<{ id: string; type: string }>;
    assert.deepEqual(factors.filter((f) => f.type === 'webauthn').map((f) => f.id).sort(), [key, passkey].sort());

    const other = await createUser(ts);
    const othersKey = await storedCredential(other.id, 'Theirs', false);
    for (const id of [recoveryId, othersKey, randomUUID(), 'not-a-uuid']) {
      const res = await call('DELETE', `/api/v1/me/devices/${id}`, token);
      assert.equal(res.status, 404, id);
      assert.equal(res.body!.error, 'IDENT_MFA_FACTOR_NOT_FOUND');
    }
    assert.equal((await call('DELETE', `/api/v1/me/devices/${key}`, token)).status, 204);
    const credentialRows = () => ts.server.services.db('webauthn_credentials').where({ user_id: user.id }).select('factor_id');
    assert.deepEqual((await credentialRows()).map((r) => r.factor_id), [passkey], 'the credential went with its factor');
    assert.deepEqual((await call('GET', '/api/v1/me/devices', token)).body!.data.map((d: { id: string }) => d.id), [passkey]);
    assert.equal((await ts.server.services.webauthn.devices(other.id)).length, 1, 'the other user keeps theirs');

    const reset = await api.post(`/users/${user.id}/mfa/reset`);
    assert.equal(reset.status, 200, reset.text);
    assert.deepEqual(await credentialRows(), [], 'the reset removed the passkey');
  });
});
