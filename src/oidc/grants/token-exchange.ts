import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import type Provider from 'oidc-provider';
import { errors, type Client, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Accounts } from '../../domain/authn/accounts.ts';
import { isAdminScope } from '../../domain/clients/admin-scopes.ts';
import type { TokenAccess } from '../../domain/access/access.ts';
import { grantedScopes } from '../../domain/clients/resource-grants.ts';
import type { ResourceServers } from '../../domain/clients/resource-servers.ts';
import { SUBJECT_GRANT_ID } from '../adapter.ts';
import type { BrokeredSubject, BrokerExchange } from './broker-exchange.ts';
import { clientTenantOf } from '../configuration/organization.ts';
import { isMultiTenant } from '../../domain/tenants/sign-in-tenant.ts';
import { DEFAULT_TENANT_ID } from '../../domain/tenants/tenant-scope.ts';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const PARAMS = [
  'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource',
  'audience', 'scope',
];
/** The JWT access token claim naming the grant a user's token was issued under (see jwtGrantReference). */
const GRANT_CLAIM = 'grant_id';

type Grant = InstanceType<Provider['Grant']>;

/** A user's token: what the user granted, and until when the token lives. */
interface UserSubject {
  kind: 'user';
  accountId: string;
  clientId: string;
  grant: Grant;
  /** The user's tenant. */
  tenantId: string;
  /** A JWT caps the exchange at its own scopes; an opaque token at its grant's. */
  scopeCap: Set<string> | undefined;
  exp: number;
}

/** A client's own (client_credentials) token: no user behind it. */
interface ClientSubject {
  kind: 'client';
  clientId: string;
  /** The client's tenant. */
  tenantId: string;
  scopeCap: Set<string>;
  exp: number;
}

type Subject = UserSubject | ClientSubject | BrokeredSubject;

/** The state ttl/extra-claims hooks read while the exchanged token is being built. */
export interface ExchangeState {
  act?: { sub: string; client_id: string };
  /** The subject's tenant: the exchanged token's tenant_id (configuration/tokens.ts). */
  tenantId?: string;
}

const tenantOfSubject = (subject: Subject): string => (subject.kind === 'federated' ? subject.user.tenant_id : subject.tenantId);

const tokenEnded = (label: string) => new errors.InvalidGrant(`the authorization behind ${label} has ended`);
const tokenInvalid = (label: string) => new errors.InvalidRequest(`${label} is invalid or expired`);

/**
 * JWT access tokens of a user name their grant, so an exchange can find what the user granted and
 * whether it still stands (a JWT itself cannot be revoked). Exchanged tokens name the subject's grant.
 */
export function jwtGrantReference(): Configuration {
  return {
    formats: {
      customizers: {
        jwt: async (_ctx, token, jwt) => {
          if (token.kind !== 'AccessToken') return;
          const t = token as unknown as Record<string, unknown>;
          const grantId = t.grantId ?? t[SUBJECT_GRANT_ID];
          if (typeof grantId === 'string') jwt.payload[GRANT_CLAIM] = grantId;
        },
      },
    },
  };
}

/**
 * RFC 8693 token exchange: an active access token we issued (opaque, or a JWT signed with our
 * keys) is exchanged for an access token for another registered resource server. The new token
 * never carries more than the subject was given: for a user, the scopes the user granted for the
 * target resource (capped at a JWT subject's own scopes); for a client, its own token's scopes. It
 * lives no longer than the subject token, and a user's exchanged token is stored under the
 * subject's grant, so whatever ends that grant (revocation, logout, password reset, suspension)
 * ends it too.
 *
 * Errors: invalid_request for a missing, unknown, expired or forged token (RFC 8693 section 2.2.2);
 * invalid_grant for a genuine token whose authorization has ended (account no longer active, grant
 * revoked; RFC 6749 section 5.2); invalid_target for an unknown resource or one the subject holds
 * nothing for; invalid_scope for scopes beyond what the subject was granted.
 *
 * A JWT of a registered upstream identity provider is exchanged too, for a token of the local
 * account linked to its subject (broker-exchange.ts): it carries at most the target's scopes (and,
 * as for every subject, only those of the client's registered scope when it has one), and is filed
 * under a grant of its own for that account and client, so the same revocations end it.
 */
export function registerTokenExchange(
  provider: Provider,
  deps: { resourceServers: ResourceServers; publicJwks: JSONWebKeySet; accounts: Pick<Accounts, 'findActive'>; broker: BrokerExchange; access?: TokenAccess | undefined },
): void {
  const jwks = createLocalJWKSet(deps.publicJwks);

  // The provider's AccessToken plus one stored field: the grant of the subject an exchanged token
  // was made from. The adapter files the row under that grant and checks the grant on every read.
  class AccessToken extends provider.AccessToken {
    static override IN_PAYLOAD = [...provider.AccessToken.IN_PAYLOAD, SUBJECT_GRANT_ID];
  }

  /** The grant a user's token stands on, if it still exists and is the user's. */
  async function liveGrant(grantId: unknown, accountId: string): Promise<Grant | undefined> {
    if (typeof grantId !== 'string' || !grantId) return undefined;
    const grant = await provider.Grant.find(grantId);
    return grant && grant.accountId === accountId ? grant : undefined;
  }

  /** A user's token counts only while its grant stands and the account is active. */
  async function userSubject(
    label: string,
    token: { accountId: string; clientId: string; grantId: unknown; scopeCap: Set<string> | undefined; exp: number },
  ): Promise<UserSubject> {
    const grant = await liveGrant(token.grantId, token.accountId);
    if (!grant) throw tokenEnded(label);
    const user = await deps.accounts.findActive(token.accountId);
    if (!user) throw tokenEnded(label);
    const { accountId, clientId, scopeCap, exp } = token;
    return { kind: 'user', accountId, clientId, grant, tenantId: user.tenant_id, scopeCap, exp };
  }

  async function clientSubject(clientId: string, scopes: Set<string>, exp: number, label: string): Promise<ClientSubject> {
    const client = await provider.Client.find(clientId);
    if (!client) throw tokenEnded(label);
    return { kind: 'client', clientId, tenantId: clientTenantOf(client).tenantId ?? DEFAULT_TENANT_ID, scopeCap: scopes, exp };
  }

  async function verifyJwt(value: string, label: string): Promise<Subject> {
    let payload;
    try {
      ({ payload } = await jwtVerify(value, jwks, { issuer: provider.issuer, typ: 'at+jwt' }));
    } catch {
      throw tokenInvalid(label);
    }
    const { sub, client_id: clientId, exp } = payload;
    if (typeof sub !== 'string' || typeof clientId !== 'string' || typeof exp !== 'number') throw tokenInvalid(label);
    const scopes = new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []);
    if (payload[GRANT_CLAIM] !== undefined) {
      return userSubject(label, { accountId: sub, clientId, grantId: payload[GRANT_CLAIM], scopeCap: scopes, exp });
    }
    // Without a grant it is a client's own token (sub = client_id); a user's JWT always names its grant.
    if (sub !== clientId) throw tokenInvalid(label);
    return clientSubject(clientId, scopes, exp, label);
  }

  /** With `client` (the exchanging client), a subject token: an upstream's JWT may be one. An actor is always ours. */
  async function verify(value: unknown, type: unknown, label: string): Promise<UserSubject | ClientSubject>;
  async function verify(value: unknown, type: unknown, label: string, client: Client): Promise<Subject>;
  async function verify(value: unknown, type: unknown, label: string, client?: Client): Promise<Subject> {
    if (typeof value !== 'string' || !value) throw new errors.InvalidRequest(`${label} missing`);
    if (type !== ACCESS_TOKEN_TYPE && type !== JWT_TOKEN_TYPE) {
      throw new errors.InvalidRequest(`unsupported ${label}_type`);
    }
    if (value.split('.').length === 3) {
      const brokered = client ? await deps.broker.subjectOf(value, type, client) : undefined;
      return brokered ?? verifyJwt(value, label);
    }

    const token = await AccessToken.find(value);
    if (token?.isValid && token.accountId) {
      const grantId = token.grantId ?? (token as unknown as Record<string, unknown>)[SUBJECT_GRANT_ID];
      return userSubject(label, { accountId: token.accountId, clientId: token.clientId!, grantId, scopeCap: undefined, exp: token.exp! });
    }
    const machine = token ? undefined : await provider.ClientCredentials.find(value);
    if (machine?.isValid) return clientSubject(machine.clientId!, machine.scopes, machine.exp!, label);
    throw tokenInvalid(label);
  }

  async function handler(ctx: KoaContextWithOIDC): Promise<void> {
    const params = ctx.oidc.params as Record<string, unknown>;
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('unsupported requested_token_type');
    }
    const client = ctx.oidc.client!;
    const subject = await verify(params.subject_token, params.subject_token_type, 'subject_token', client);
    const actor = params.actor_token
      ? await verify(params.actor_token, params.actor_token_type, 'actor_token')
      : undefined;
    if (!params.actor_token && params.actor_token_type) throw new errors.InvalidRequest('actor_token missing');
    // Another client presenting a client's token would act as that client towards the target.
    if (subject.kind === 'client' && subject.clientId !== client.clientId) {
      throw new errors.InvalidRequest('a client_credentials token can only be exchanged by its own client');
    }
    // Tenants never mix: the subject (and an actor) must be of the exchanging client's tenant; a
    // multi_tenant platform client serves every tenant's users, each token staying its subject's.
    const tenantId = tenantOfSubject(subject);
    const clientTenant = clientTenantOf(client);
    if (!isMultiTenant(clientTenant) && tenantId !== (clientTenant.tenantId ?? DEFAULT_TENANT_ID)) {
      throw new errors.InvalidRequest("subject_token belongs to another tenant than the client's");
    }
    if (actor && tenantOfSubject(actor) !== tenantId) throw new errors.InvalidRequest('actor_token belongs to another tenant than subject_token');
    (ctx.state as ExchangeState).tenantId = tenantId;

    const resource = params.resource ?? params.audience;
    if (typeof resource !== 'string') throw new errors.InvalidTarget('exactly one registered resource is required');
    const server = await deps.resourceServers.find(resource);
    if (!server) throw new errors.InvalidTarget('resource indicator is not registered');

    const defined = new Set(server.scopes);
    const requested = typeof params.scope === 'string' && params.scope ? params.scope.split(' ').filter(Boolean) : undefined;
    // Admin (iam.*) scopes go only to client_credentials grants, never through an exchange.
    const undefinedScopes = (requested ?? []).filter((s) => !defined.has(s) || isAdminScope(s));
    if (undefinedScopes.length) {
      throw new errors.InvalidScope('requested scope is not defined by the resource server', undefinedScopes.join(' '));
    }

    // What the subject may carry to this resource: a user's grant for it; a client what it was
    // granted there (resource_scopes, as for client_credentials) within its own token's scopes, so a
    // token for one resource is no way into another; an upstream's subject the resource's. Never
    // beyond what the exchanging client was registered for (a machine's grant is that already).
    // At a resource server with RBAC a user gets no more than their roles grant there; a service
    // account's client always only what its roles grant (as for client_credentials, tokens.ts).
    const serviceAccount = subject.kind === 'client' ? await deps.access?.serviceAccounts.byClientId(client.clientId) : undefined;
    let held = subject.kind === 'user' ? subject.grant.getResourceScope(server.identifier).split(' ')
      : subject.kind === 'client'
        ? serviceAccount ? await deps.access!.roles.scopesAt('service_account', serviceAccount.id, server.identifier) : grantedScopes(client as unknown as Record<string, unknown>, server.identifier)
        : [...server.scopes];
    if (server.rbac && subject.kind !== 'client' && deps.access) {
      const byRoles = new Set(await deps.access.roles.scopesAt('user', subject.accountId, server.identifier));
      held = held.filter((s) => byRoles.has(s));
    }
    const scopeCap = subject.kind === 'federated' ? undefined : subject.scopeCap;
    const clientAllowed = client.scope && subject.kind !== 'client' ? new Set(client.scope.split(' ')) : undefined;
    const permitted = new Set(
      held.filter((s) => s && defined.has(s) && !isAdminScope(s)
        && (!scopeCap || scopeCap.has(s))
        && (!clientAllowed || clientAllowed.has(s))),
    );
    const beyond = (requested ?? []).filter((s) => !permitted.has(s));
    if (beyond.length) throw new errors.InvalidScope('requested scope exceeds what the subject was granted', beyond.join(' '));
    const scopes = requested ?? [...permitted];
    if (!scopes.length) throw new errors.InvalidTarget('the subject holds no scope for this resource');

    const resourceServer = new provider.ResourceServer(server.identifier, {
      audience: server.identifier,
      scope: server.scopes.join(' '),
      accessTokenFormat: server.accessTokenFormat,
      accessTokenTTL: server.accessTokenTtl,
      ...(server.accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
    });
    // A user's exchanged token is filed under the subject's grant (see AccessToken above); an
    // upstream subject's under a grant made for it below; a client's is a client_credentials token
    // of that client, with no account behind it.
    const token = subject.kind === 'client'
      ? Object.assign(new provider.ClientCredentials({ client, scope: scopes.join(' ') }), { gty: 'token_exchange' })
      : new AccessToken({
          grantId: undefined as unknown as string,
          ...(subject.kind === 'user' ? { [SUBJECT_GRANT_ID]: subject.grant.jti } : {}),
          accountId: subject.accountId,
          client,
          gty: 'token_exchange',
          scope: scopes.join(' '),
        });
    token.resourceServer = resourceServer;
    // The new token ends no later than the subject token. Its iat and exp are fixed here: left to
    // save(), exp would be counted from a later second and could pass the subject's by one.
    const now = Math.floor(Date.now() / 1000);
    const remaining = subject.exp - now;
    if (remaining <= 0) throw tokenInvalid('subject_token');
    const expiresIn = Math.min(token.expiration, remaining);
    Object.assign(token, { iat: now, exp: now + expiresIn, expiresIn });
    if (subject.kind === 'federated') {
      // The account granted this client nothing here; the grant records what the exchange gave, for
      // as long as the token lives, so revocation, logout-all and suspension end it like any other.
      const grant = new provider.Grant({ accountId: subject.accountId, clientId: client.clientId, expiresIn } as ConstructorParameters<Provider['Grant']>[0]);
      grant.addResourceScope(server.identifier, scopes.join(' '));
      await grant.save();
      Object.assign(token, { grantId: grant.jti });
    }
    if (actor) {
      const sub = actor.kind === 'user' ? actor.accountId : actor.clientId;
      (ctx.state as ExchangeState).act = { sub, client_id: actor.clientId };
    }

    ctx.oidc.entity(token.kind, token);
    const value = await token.save();
    if (subject.kind === 'federated') {
      await deps.broker.recordSignIn(subject, { clientId: client.clientId, requestId: ctx.state.requestId as string | undefined });
    }
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
