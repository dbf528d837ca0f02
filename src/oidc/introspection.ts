import { decodeProtectedHeader } from 'jose';
import type { Provider } from './provider.ts';

/** The fields of a provider token model this module reads (AccessToken, ClientCredentials, RefreshToken). */
interface FoundToken {
  kind: string;
  isValid: boolean;
  grantId?: string;
  accountId?: string;
  clientId: string;
  exp?: number;
  iat?: number;
  sid?: string;
  jti: string;
  aud?: string | string[];
  scope?: string;
  extra?: Record<string, unknown>;
  tokenType?: string;
  jkt?: string;
  'x5t#S256'?: string;
  isSenderConstrained(): boolean;
}

export type IntrospectionAnswer =
  | { status: 200; body: Record<string, unknown> }
  | { status: 400; body: { error: string; error_description: string } };

const ACCESS_HINTS = new Set(['access_token', 'urn:ietf:params:oauth:token-type:access_token']);
const REFRESH_HINTS = new Set(['refresh_token', 'urn:ietf:params:oauth:token-type:refresh_token']);

const first = (found: Array<unknown>) => found.find(Boolean) as FoundToken | undefined;

/** The provider's own lookup order (lib/helpers/token_find.js): the hint's model first, then the others. */
async function findToken(provider: Provider, value: string, hint: string | undefined): Promise<FoundToken | undefined> {
  const access = () => Promise.all([provider.AccessToken.find(value), provider.ClientCredentials.find(value)]).then(first);
  const refresh = async () => (await provider.RefreshToken.find(value)) as unknown as FoundToken | undefined;
  if (hint && ACCESS_HINTS.has(hint)) return (await access()) ?? refresh();
  if (hint && REFRESH_HINTS.has(hint)) return (await refresh()) ?? access();
  return first(await Promise.all([provider.AccessToken.find(value), provider.ClientCredentials.find(value), provider.RefreshToken.find(value)]));
}

/**
 * RFC 7662 introspection as the provider's introspection endpoint answers an introspector (a client
 * registered with introspection_allowed), without client authentication: for the internal listener
 * (POST /internal/identity/tokens/introspect). The steps and the answer are those of
 * oidc-provider's lib/actions/introspection.js (9.x): structured (JWT) tokens are refused with
 * unsupported_token_type as there, an unknown, expired, consumed or revoked token (its grant gone
 * or expired) is {active: false}, and an active one carries the token's claims (tenant_id among
 * its extra claims). Keep it in step with that file when the provider is upgraded; the
 * internal-endpoints test compares both answers.
 */
export async function introspect(provider: Provider, params: { token?: string | undefined; token_type_hint?: string | undefined }): Promise<IntrospectionAnswer> {
  const { token: value, token_type_hint: hint } = params;
  if (!value) return { status: 400, body: { error: 'invalid_request', error_description: "missing required parameter 'token'" } };
  let structured = false;
  try {
    structured = Boolean(decodeProtectedHeader(value));
  } catch {
    // Not a JWT: an opaque token to look up.
  }
  if (structured) {
    return { status: 400, body: { error: 'unsupported_token_type', error_description: 'Structured JWT Tokens cannot be introspected via the introspection_endpoint' } };
  }

  const inactive: IntrospectionAnswer = { status: 200, body: { active: false } };
  const token = await findToken(provider, value, hint);
  if (!token?.isValid) return inactive;
  if (token.grantId) {
    const grant = await provider.Grant.find(token.grantId, { ignoreExpiration: true });
    if (!grant || grant.isExpired || grant.clientId !== token.clientId || grant.accountId !== token.accountId) return inactive;
  }
  if (!['AccessToken', 'ClientCredentials', 'RefreshToken'].includes(token.kind)) return inactive;

  const cnf: Record<string, string> | undefined = token.isSenderConstrained() ? {} : undefined;
  if (cnf && token['x5t#S256']) cnf['x5t#S256'] = token['x5t#S256'];
  if (cnf && token.jkt) cnf.jkt = token.jkt;
  const body: Record<string, unknown> = {
    ...(token.accountId ? { sub: token.accountId } : {}),
    ...token.extra,
    active: true,
    client_id: token.clientId,
    exp: token.exp,
    iat: token.iat,
    sid: token.sid,
    iss: provider.issuer,
    jti: token.jti !== value ? token.jti : undefined,
    aud: token.aud,
    scope: token.scope || undefined,
    cnf,
    token_type: token.kind !== 'RefreshToken' ? token.tokenType : undefined,
  };
  // As JSON: the keys whose value is undefined are not sent (the provider's answer goes through JSON too).
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return { status: 200, body };
}
