import { randomBytes } from 'node:crypto';
import { seg, type AdminApi } from '../api.ts';
import { openCallbackServer } from '../callback-server.ts';
import type { RemoteCommand } from '../command.ts';
import { ApiError, CliError } from '../errors.ts';
import { authorizationRequest, codeFrom, discover, fetchUserInfo, redeemCode, verifyIdToken } from '../oidc-flow.ts';
import { fields, note, print, printJson } from '../output.ts';
import { findUserByEmail, type User } from './users.ts';

// `idp demo`, like `hydra perform authorization-code`: a public client and a user made (or reused)
// through the admin API, then one real sign-in, with this process as the relying party.

const CLIENT_ID = 'idp-demo';
const EMAIL = 'demo@example.test';
const SCOPE = 'openid profile email';

interface DemoClient {
  client_id: string;
  token_endpoint_auth_method?: string;
  redirect_uris?: string[];
}

async function ensureClient(api: AdminApi, redirectUri: string): Promise<string> {
  const existing = await api.find<DemoClient>(`/clients/${seg(CLIENT_ID)}`);
  if (!existing) {
    try {
      await api.post('/clients', {
        client_id: CLIENT_ID,
        client_name: 'idp demo',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [redirectUri],
        // The operator's own tool: no consent screen between sign-in and the tokens.
        first_party: true,
      });
      return 'created';
    } catch (err) {
      // Another run created it between our read and our write: fall through and reuse it.
      if (!(err instanceof ApiError && err.code === 'IDENT_CLIENT_DUPLICATE')) throw err;
      return ensureClient(api, redirectUri);
    }
  }
  if (existing.token_endpoint_auth_method !== 'none') {
    throw new CliError(`the client ${CLIENT_ID} exists but is not a public client; remove it with "idp clients delete ${CLIENT_ID}"`);
  }
  if (existing.redirect_uris?.length === 1 && existing.redirect_uris[0] === redirectUri) return 'reused';
  // The redirect URI follows --port; the demo client serves one local callback at a time.
  await api.patch(`/clients/${seg(CLIENT_ID)}`, { redirect_uris: [redirectUri] });
  return `reused, redirect URI set to ${redirectUri}`;
}

async function ensureUser(api: AdminApi, password: string): Promise<string> {
  const existing = await findUserByEmail(api, EMAIL);
  if (!existing) {
    await api.post<User>('/users', { email: EMAIL, password, emailVerified: true, givenName: 'Demo', familyName: 'User' });
    return 'created';
  }
  if (existing.status === 'deactivated') throw new CliError(`the demo user ${EMAIL} is deactivated and cannot be reused`);
  if (existing.status === 'suspended') await api.post(`/users/${seg(existing.id)}/reactivate`);
  // Only the run that created the user knew its password: set one, so the printed one works.
  await api.patch(`/users/${seg(existing.id)}`, { password });
  return existing.status === 'suspended' ? 'reused, reactivated, new password' : 'reused, new password';
}

export const demoCommand: RemoteCommand = {
  name: 'demo',
  summary: 'sign in once with authorization code + PKCE through a demo client and user, and print the tokens',
  options: {
    port: { type: 'string', value: '<port>', description: 'local callback port on 127.0.0.1 (default 5555)' },
    timeout: { type: 'string', value: '<seconds>', description: 'give up waiting for the sign-in after this long (default 300)' },
    password: { type: 'string', value: '<password>', description: 'password to give the demo user (default: a random one, printed)' },
  },
  scopes: () => [
    'iam.clients:read',
    'iam.clients:create',
    'iam.clients:update',
    'iam.users:read',
    'iam.users:create',
    'iam.users:update',
    'iam.users:suspend',
  ],
  async run({ args, api, json }) {
    const port = args.int('port', 1, 65535) ?? 5555;
    const timeout = args.int('timeout', 1, 86_400) ?? 300;
    const password = args.string('password') ?? randomBytes(12).toString('base64url');
    // With --json, stdout carries only the result; the instructions go to stderr.
    const say = json ? note : print;

    // Listen first: a busy port should fail before anything is created for it.
    const callback = await openCallbackServer(port);
    try {
      const discovery = await discover(api.issuer);
      const clientState = await ensureClient(api, callback.redirectUri);
      const userState = await ensureUser(api, password);
      const request = authorizationRequest(discovery, { clientId: CLIENT_ID, redirectUri: callback.redirectUri, scope: SCOPE });
      say(fields({ 'Demo client': `${CLIENT_ID} (${clientState})`, 'Demo user': `${EMAIL} (${userState})`, Password: password }));
      say(`\nOpen this URL in a browser and sign in as ${EMAIL}:\n\n  ${request.url.href}\n`);
      say(`Waiting for the sign-in at ${callback.redirectUri} (up to ${timeout} s)...`);

      const result = await callback.waitForCallback(
        request.state,
        async (params) => {
          const code = codeFrom(discovery, params);
          const tokens = await redeemCode(discovery, { clientId: CLIENT_ID, redirectUri: callback.redirectUri, code, verifier: request.verifier });
          const claims = await verifyIdToken(discovery, tokens.id_token, { clientId: CLIENT_ID, nonce: request.nonce });
          const userinfo = await fetchUserInfo(discovery, tokens.access_token, claims.sub!);
          return { claims, userinfo, tokens };
        },
        timeout * 1000,
      );

      if (json) return printJson(result);
      print(
        `\nSigned in.\n\nID token claims:\n${fields(result.claims, '  ')}\n` +
          `UserInfo claims:\n${fields(result.userinfo, '  ')}\nTokens:\n${fields(result.tokens, '  ')}`,
      );
    } finally {
      callback.close();
    }
  },
};
