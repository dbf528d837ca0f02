import { createHash, randomBytes } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { CliError } from './errors.ts';
import { jsonOrThrow, send } from './http.ts';

// The relying-party side of authorization code + PKCE, as a public client on the operator's machine.

export interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
  userinfo_endpoint?: string;
  authorization_response_iss_parameter_supported?: boolean;
}

export interface TokenSet extends Record<string, unknown> {
  access_token: string;
  id_token?: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
}

export interface AuthorizationRequest {
  url: URL;
  state: string;
  nonce: string;
  verifier: string;
}

export async function discover(issuer: string): Promise<Discovery> {
  const res = await send(new URL(`${issuer}/.well-known/openid-configuration`), { headers: { accept: 'application/json' } });
  const d = await jsonOrThrow<Partial<Discovery>>(res, 'discovery');
  // OpenID Connect Discovery 4.3: the document must name the issuer we asked.
  if (d?.issuer !== issuer) throw new CliError(`discovery names the issuer "${d?.issuer}", not "${issuer}" (check --issuer)`);
  if (!d.authorization_endpoint || !d.token_endpoint || !d.jwks_uri) throw new CliError('discovery lacks an endpoint');
  return d as Discovery;
}

const random = () => randomBytes(32).toString('base64url');

/** PKCE S256, state against cross-site callbacks, nonce against ID token replay. */
export function authorizationRequest(d: Discovery, p: { clientId: string; redirectUri: string; scope: string }): AuthorizationRequest {
  const verifier = random();
  const state = random();
  const nonce = random();
  const url = new URL(d.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: p.clientId,
    redirect_uri: p.redirectUri,
    scope: p.scope,
    state,
    nonce,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString();
  return { url, state, nonce, verifier };
}

/**
 * The code from a callback's query. RFC 9207: where the provider says it sends `iss`, a response
 * without our issuer's may come from another provider (mix-up) and is refused.
 */
export function codeFrom(d: Discovery, params: URLSearchParams): string {
  if (d.authorization_response_iss_parameter_supported && params.get('iss') !== d.issuer) {
    throw new CliError(`the callback's iss "${params.get('iss') ?? ''}" is not the issuer`);
  }
  const error = params.get('error');
  if (error) throw new CliError(`the sign-in failed: ${error}${params.has('error_description') ? `: ${params.get('error_description')}` : ''}`);
  const code = params.get('code');
  if (!code) throw new CliError('the callback has no code');
  return code;
}

export async function redeemCode(
  d: Discovery,
  p: { clientId: string; redirectUri: string; code: string; verifier: string },
): Promise<TokenSet> {
  const res = await send(new URL(d.token_endpoint), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: p.code,
      redirect_uri: p.redirectUri,
      code_verifier: p.verifier,
      client_id: p.clientId,
    }),
  });
  const tokens = await jsonOrThrow<TokenSet>(res, 'token request');
  if (!tokens?.access_token) throw new CliError('the token endpoint answered without an access_token');
  return tokens;
}

/** Checks the ID token's signature (the issuer's JWKS), issuer, audience, expiry and nonce. */
export async function verifyIdToken(d: Discovery, idToken: string | undefined, p: { clientId: string; nonce: string }): Promise<JWTPayload> {
  if (!idToken) throw new CliError('the token response has no id_token (was the openid scope granted?)');
  try {
    const { payload } = await jwtVerify(idToken, createRemoteJWKSet(new URL(d.jwks_uri)), {
      issuer: d.issuer,
      audience: p.clientId,
      requiredClaims: ['sub', 'iat', 'exp'],
    });
    if (payload.nonce !== p.nonce) throw new Error('the nonce does not match the request');
    return payload;
  } catch (err) {
    throw new CliError(`the ID token is not valid: ${(err as Error).message}`);
  }
}

/**
 * With an access token issued, the ID token carries only the subject and protocol claims (OpenID
 * Connect Core 5.4); profile and email claims are at the UserInfo endpoint.
 */
export async function fetchUserInfo(d: Discovery, accessToken: string, sub: string): Promise<Record<string, unknown>> {
  if (!d.userinfo_endpoint) throw new CliError('discovery names no userinfo_endpoint');
  const res = await send(new URL(d.userinfo_endpoint), { headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } });
  const claims = await jsonOrThrow<Record<string, unknown>>(res, 'userinfo');
  // OpenID Connect Core 5.3.2: UserInfo for another subject must not be used.
  if (claims?.sub !== sub) throw new CliError('the UserInfo response is for another subject');
  return claims;
}
