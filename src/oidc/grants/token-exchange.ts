import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import type Provider from 'oidc-provider';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { ResourceServers } from '../../domain/resource-servers.ts';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const PARAMS = [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource',
  'audience', 'scope',
];

interface VerifiedToken {
  sub: string;
  clientId: string;
  scopes: Set<string>;
}

/** The state ttl/extra-claims hooks read while the exchanged token is being built. */
export interface ExchangeState {
  act?: { sub: string; client_id: string };
}

/**
 * RFC 8693 token exchange: an active access token we issued (opaque, or a JWT signed with our
 * keys) is exchanged for an access token for another registered resource server. The subject is
 * kept; an actor_token adds an `act` claim. Errors use the RFC's codes: invalid_request for a bad
 * or unacceptable token, invalid_target for an unknown resource, invalid_scope for scopes beyond
 * what the resource server defines or the subject token carries.
 */
export function registerTokenExchange(
  provider: Provider,
  deps: { resourceServers: ResourceServers; publicJwks: JSONWebKeySet },
): void {
  const jwks = createLocalJWKSet(deps.publicJwks);

  async function verify(value: unknown, type: unknown, label: string): Promise<VerifiedToken> {
    if (typeof value !== 'string' || !value) throw new errors.InvalidRequest(`${label} missing`);
    if (type !== ACCESS_TOKEN_TYPE && type !== JWT_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`unsupported ${label}_type`);
    }
    if (value.split('.').length === 3) {
      try {
        const { payload } = await jwtVerify(value, jwks, { issuer: provider.issuer, typ: 'at+jwt' });
        if (typeof payload.sub !== 'string' || typeof payload.client_id !== 'string') throw new Error('claims');
        return {
          sub: payload.sub,
          clientId: payload.client_id,
          scopes: new Set(typeof payload.scope === 'string' ? payload.scope.split(' ') : []),
        };
      } catch {
        throw new errors.InvalidRequest(`${label} is invalid or expired`);
      }
    }
    const token = await provider.AccessToken.find(value);
    if (!token || !token.isValid || !token.accountId) throw new errors.InvalidRequest(`${label} is invalid or expired`);
    if (token.grantId && !(await provider.Grant.find(token.grantId))) {
      throw new errors.InvalidRequest(`${label} is invalid or expired`);
    }
    return { sub: token.accountId, clientId: token.clientId!, scopes: token.scopes };
  }

  async function handler(ctx: KoaContextWithOIDC): Promise<void> {
    const params = ctx.oidc.params as Record<string, unknown>;
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported requested_token_type');
    }
    const subject = await verify(params.subject_token, params.subject_token_type, 'subject_token');
    const actor = params.actor_token
      ? await verify(params.actor_token, params.actor_token_type, 'actor_token')
      : undefined;
    if (!params.actor_token && params.actor_token_type) throw new errors.InvalidRequest('actor_token missing');

    const resource = params.resource ?? params.audience;
    if (typeof resource !== 'string') throw new errors.InvalidTarget('exactly one registered resource is required');
    const server = await deps.resourceServers.find(resource);
    if (!server) throw new errors.InvalidTarget('resource indicator is not registered');

    const allowed = new Set(server.scopes);
    const requested = typeof params.scope === 'string' && params.scope ? params.scope.split(' ') : undefined;
    const outside = (requested ?? []).filter((s) => !allowed.has(s));
    if (outside.length) throw new errors.InvalidScope('requested scope is not defined by the resource server', outside.join(' '));
    const client = ctx.oidc.client!;
    const clientAllowed = client.scope ? new Set(client.scope.split(' ')) : undefined;
    const scopes = (requested ?? [...subject.scopes].filter((s) => allowed.has(s))).filter(
      (s) => !clientAllowed || clientAllowed.has(s),
    );

    // No grantId: the exchanged token belongs to this client, not to the subject token's grant.
    const token = new provider.AccessToken({
      grantId: undefined as unknown as string,
      accountId: subject.sub,
      client,
      gty: 'token_exchange',
      scope: scopes.join(' ') || undefined,
    });
    token.resourceServer = new provider.ResourceServer(server.identifier, {
      audience: server.identifier,
      scope: server.scopes.join(' '),
      accessTokenFormat: server.accessTokenFormat,
      accessTokenTTL: server.accessTokenTtl,
      ...(server.accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
    });
    if (actor) (ctx.state as ExchangeState).act = { sub: actor.sub, client_id: actor.clientId };

    ctx.oidc.entity('AccessToken', token);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: token.tokenType,
      expires_in: token.expiration,
      scope: token.scope || undefined,
    };
  }

  provider.registerGrantType(TOKEN_EXCHANGE, handler as never, PARAMS, ['resource']);
}
