import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import type { EventRecorder } from '../events/events.ts';
import type { SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/index.ts';
import { selfSignedIdentity, type SigningIdentity } from '../../infra/self-signed-certificate.ts';
import { createSharedCache } from '../../infra/shared-cache.ts';
import type {
  AccountLinking, IdentityProviderChanges, IdentityProviderRow, IdentityProvidersRepo, IdentityProviderType,
} from '../../repos/identity-providers.ts';
import { AppError, isUniqueViolation } from '../errors.ts';
import { assertInTenant, type TenantScope } from '../tenants/tenant-scope.ts';
import { readSamlIdpMetadata } from './saml-metadata.ts';
import { upstreamUrl } from './upstream-urls.ts';

/**
 * The upstream identity providers people sign in through (Keycloak's identity brokering, Logto's
 * enterprise and social connectors): registered by operators through the admin API, listed on the
 * login page, used by the federation routes. A client secret is sealed at rest and leaves this
 * module only to the code that calls the upstream's token endpoint.
 */

export type { AccountLinking, IdentityProviderType };

/** A provider's alias: it names the provider in URLs, links and client metadata. */
export const IDP_ALIAS = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export type TokenEndpointAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none';

/** Which upstream claim (OIDC, OAuth 2.0 user endpoint) or SAML attribute gives each local field. */
export interface ClaimMapping {
  subject: string;
  email: string;
  /** Null: the upstream never says; its emails count as verified only with trustEmail. */
  emailVerified: string | null;
  name: string | null;
  givenName: string | null;
  familyName: string | null;
  groups: string | null;
}

export interface OidcSettings {
  issuer: string;
  clientId: string;
  scopes: string[];
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  claimMapping: ClaimMapping;
}

export interface OAuth2Settings {
  authorizationEndpoint: string;
  tokenEndpoint: string;
  userinfoEndpoint: string;
  clientId: string;
  scopes: string[];
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  claimMapping: ClaimMapping;
}

export interface SamlSettings {
  metadataXml: string;
  /** Where the metadata came from, when it was fetched rather than given. */
  metadataUrl: string | null;
  /** Read from the metadata. */
  entityId: string;
  ssoRedirectUrl: string;
  wantAssertionsSigned: boolean;
  signAuthnRequests: boolean;
  attributeMapping: ClaimMapping;
}

interface Common {
  id: string;
  /** The tenant whose sign-ins offer it; the accounts it signs in and provisions are that tenant's. */
  tenantId: string;
  alias: string;
  displayName: string;
  enabled: boolean;
  /** Email domains whose people this provider serves: home-realm discovery, and a check on who it may sign in. */
  allowedDomains: string[];
  jitProvisioning: boolean;
  accountLinking: AccountLinking;
  trustEmail: boolean;
  trustUpstreamMfa: boolean;
  hasClientSecret: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export type IdentityProvider =
  | (Common & { type: 'oidc'; oidc: OidcSettings })
  | (Common & { type: 'oauth2'; oauth2: OAuth2Settings })
  | (Common & { type: 'saml'; saml: SamlSettings });

interface CommonInput {
  displayName?: string | undefined;
  enabled?: boolean | undefined;
  allowedDomains?: string[] | undefined;
  jitProvisioning?: boolean | undefined;
  accountLinking?: AccountLinking | undefined;
  trustEmail?: boolean | undefined;
  trustUpstreamMfa?: boolean | undefined;
}

interface OAuthInput {
  clientId?: string | undefined;
  /** Null removes it (a public client with PKCE). */
  clientSecret?: string | null | undefined;
  scopes?: string[] | undefined;
  tokenEndpointAuthMethod?: TokenEndpointAuthMethod | undefined;
  claimMapping?: Partial<ClaimMapping> | undefined;
}

export interface IdentityProviderInput extends CommonInput, OAuthInput {
  issuer?: string | undefined;
  authorizationEndpoint?: string | undefined;
  tokenEndpoint?: string | undefined;
  userinfoEndpoint?: string | undefined;
  metadataXml?: string | undefined;
  metadataUrl?: string | undefined;
  wantAssertionsSigned?: boolean | undefined;
  signAuthnRequests?: boolean | undefined;
  attributeMapping?: Partial<ClaimMapping> | undefined;
}

export interface NewIdentityProviderInput extends IdentityProviderInput {
  alias: string;
  type: IdentityProviderType;
  displayName: string;
}

const OIDC_CLAIMS: ClaimMapping = {
  subject: 'sub', email: 'email', emailVerified: 'email_verified', name: 'name', givenName: 'given_name', familyName: 'family_name', groups: null,
};
// GitHub-style user endpoints: a numeric id, no verified flag (trustEmail decides).
const OAUTH2_CLAIMS: ClaimMapping = { ...OIDC_CLAIMS, subject: 'id', emailVerified: null, givenName: null, familyName: null };
// The usual names of SAML attributes (the unqualified ones; mappings name the IdP's own).
const SAML_ATTRIBUTES: ClaimMapping = {
  subject: 'nameID', email: 'email', emailVerified: null, name: 'displayName', givenName: 'givenName', familyName: 'surname', groups: 'groups',
};

/** Our side of a provider's federation, for the operator to register at the upstream. */
export function federationEndpoints(issuer: string, provider: Pick<IdentityProvider, 'type' | 'alias'>): Record<string, string> {
  const base = `${issuer}/api/v1/auth/${provider.type}/${encodeURIComponent(provider.alias)}`;
  if (provider.type !== 'saml') return { redirectUri: `${base}/callback` };
  // Our SP entityID is its metadata URL, as Keycloak and most SPs do: resolvable and unique per provider.
  return { entityId: `${base}/metadata`, metadataUrl: `${base}/metadata`, acsUrl: `${base}/acs`, sloUrl: `${base}/slo` };
}

/**
 * A provider as its events carry it: what identifies it and how it is trusted, never its client
 * secret, its SP key or its metadata document.
 */
export function identityProviderPayload(p: IdentityProvider) {
  return {
    id: p.id,
    alias: p.alias,
    type: p.type,
    displayName: p.displayName,
    enabled: p.enabled,
    allowedDomains: p.allowedDomains,
    jitProvisioning: p.jitProvisioning,
    accountLinking: p.accountLinking,
    trustEmail: p.trustEmail,
    trustUpstreamMfa: p.trustUpstreamMfa,
    hasClientSecret: p.hasClientSecret,
  };
}

const METADATA_FETCH_TIMEOUT_MS = 10_000;
const METADATA_MAX_BYTES = 1024 * 1024;
const secretAad = (id: string) => `idp-client-secret/v1:${id}`;
const spKeyAad = (id: string) => `idp-saml-sp-key/v1:${id}`;

export function createIdentityProviders(deps: {
  repo: IdentityProvidersRepo;
  box: SecretBox;
  ephemeral: EphemeralStore;
  fetch?: typeof fetch;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}) {
  const { repo, box, events } = deps;
  const target = (id: string, tenantId: string) => ({ target: { type: 'identity_provider' as const, id }, tenantId });
  const fetchMetadata = deps.fetch ?? fetch;
  // The login page lists the enabled providers on every render; changes reach every instance at once.
  const enabled = createSharedCache<IdentityProvider[]>({
    name: 'identity-providers',
    ttlMs: 10_000,
    ephemeral: deps.ephemeral,
    load: async () => (await repo.listEnabled()).map(toProvider),
  });
  const changed = () => enabled.invalidate('enabled');

  /** The metadata at `url`, fetched now: a provider is registered with what its IdP publishes today. */
  async function fetchSamlMetadata(url: string): Promise<string> {
    let response: Response;
    try {
      response = await fetchMetadata(url, { signal: AbortSignal.timeout(METADATA_FETCH_TIMEOUT_MS), redirect: 'error' });
    } catch {
      throw new AppError('IDENT_FEDERATION_UNAVAILABLE', 'the metadataUrl did not answer within 10 seconds');
    }
    const text = await response.text();
    if (!response.ok) throw new AppError('IDENT_FEDERATION_UNAVAILABLE', `the metadataUrl answered ${response.status}`);
    if (Buffer.byteLength(text) > METADATA_MAX_BYTES) throw new AppError('IDENT_VALIDATION', 'body.metadataUrl: the metadata exceeds 1 MB');
    return text;
  }

  async function samlSettings(input: IdentityProviderInput, before?: SamlSettings): Promise<SamlSettings> {
    let { metadataXml } = input;
    let metadataUrl = before?.metadataUrl ?? null;
    if (input.metadataUrl !== undefined) {
      metadataUrl = upstreamUrl(input.metadataUrl, 'metadataUrl');
      metadataXml = await fetchSamlMetadata(metadataUrl);
    } else if (metadataXml !== undefined) metadataUrl = null;
    metadataXml ??= before?.metadataXml;
    if (metadataXml === undefined) throw new AppError('IDENT_VALIDATION', 'body: a saml provider needs metadataXml or metadataUrl');
    const { entityId, ssoRedirectUrl } = await readSamlIdpMetadata(metadataXml);
    return {
      metadataXml,
      metadataUrl,
      entityId,
      ssoRedirectUrl,
      wantAssertionsSigned: input.wantAssertionsSigned ?? before?.wantAssertionsSigned ?? true,
      signAuthnRequests: input.signAuthnRequests ?? before?.signAuthnRequests ?? false,
      attributeMapping: { ...(before?.attributeMapping ?? SAML_ATTRIBUTES), ...input.attributeMapping },
    };
  }

  function oauthCommon(input: OAuthInput, before: OidcSettings | OAuth2Settings | undefined, defaults: ClaimMapping) {
    const clientId = input.clientId ?? before?.clientId;
    if (!clientId) throw new AppError('IDENT_VALIDATION', 'body.clientId: required');
    return {
      clientId,
      scopes: input.scopes ?? before?.scopes ?? ['openid', 'email', 'profile'],
      tokenEndpointAuthMethod: input.tokenEndpointAuthMethod ?? before?.tokenEndpointAuthMethod ?? 'client_secret_basic',
      claimMapping: { ...(before?.claimMapping ?? defaults), ...input.claimMapping },
    };
  }

  /** The type's settings from the input (over the provider's current ones on an update), checked. */
  async function settingsOf(type: IdentityProviderType, input: IdentityProviderInput, before?: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (type === 'saml') return { ...(await samlSettings(input, before as SamlSettings | undefined)) };
    if (type === 'oidc') {
      const prior = before as OidcSettings | undefined;
      const issuer = input.issuer ?? prior?.issuer;
      if (!issuer) throw new AppError('IDENT_VALIDATION', 'body.issuer: required for an oidc provider');
      return { issuer: upstreamUrl(issuer, 'issuer'), ...oauthCommon(input, prior, OIDC_CLAIMS) } satisfies OidcSettings;
    }
    const prior = before as OAuth2Settings | undefined;
    const endpoint = (field: 'authorizationEndpoint' | 'tokenEndpoint' | 'userinfoEndpoint') => {
      const value = input[field] ?? prior?.[field];
      if (!value) throw new AppError('IDENT_VALIDATION', `body.${field}: required for an oauth2 provider`);
      return upstreamUrl(value, field);
    };
    const common = oauthCommon(input, prior, OAUTH2_CLAIMS);
    return {
      authorizationEndpoint: endpoint('authorizationEndpoint'),
      tokenEndpoint: endpoint('tokenEndpoint'),
      userinfoEndpoint: endpoint('userinfoEndpoint'),
      ...common,
      // OAuth 2.0 has no openid scope; the default asks for the user's email as GitHub names it.
      scopes: input.scopes ?? prior?.scopes ?? ['user:email'],
    } satisfies OAuth2Settings;
  }

  /** A client secret is needed to authenticate with one; `none` is a public client (PKCE alone). */
  function checkSecret(type: IdentityProviderType, settings: Record<string, unknown>, hasSecret: boolean) {
    if (type === 'saml') {
      if (hasSecret) throw new AppError('IDENT_VALIDATION', 'body.clientSecret: a saml provider has no client secret');
      return;
    }
    const method = settings.tokenEndpointAuthMethod as TokenEndpointAuthMethod;
    if (method !== 'none' && !hasSecret) throw new AppError('IDENT_VALIDATION', `body.clientSecret: required with tokenEndpointAuthMethod ${method}`);
    if (method === 'none' && hasSecret) throw new AppError('IDENT_VALIDATION', 'body.clientSecret: not used with tokenEndpointAuthMethod none');
  }

  const domainsOf = (domains: string[] | undefined) => domains && [...new Set(domains.map((d) => d.toLowerCase()))];

  /** The provider, if it is in the scope's tenant: another tenant's is 403 IDENT_CROSS_TENANT. */
  async function find(scope: TenantScope, id: string): Promise<IdentityProviderRow> {
    const row = await load(id);
    assertInTenant(scope, row.tenant_id, 'the identity provider');
    return row;
  }

  /** The provider whichever its tenant (sign-in, which has the provider already). */
  async function load(id: string): Promise<IdentityProviderRow> {
    const row = await repo.findById(id);
    if (!row) throw new AppError('IDENT_IDP_NOT_FOUND');
    return row;
  }

  return {
    async create(scope: TenantScope, input: NewIdentityProviderInput, context: ChangeContext = {}): Promise<IdentityProvider> {
      const id = randomUUID();
      const settings = await settingsOf(input.type, input);
      checkSecret(input.type, settings, typeof input.clientSecret === 'string');
      // Our SP's own signing identity for this provider (metadata, signed AuthnRequests).
      const sp = input.type === 'saml' ? await selfSignedIdentity(`sp-${input.alias}`) : undefined;
      try {
        const row = await deps.transaction(async (trx) => {
          const stored = await repo.insert({
            id,
            tenant_id: scope.tenantId,
            alias: input.alias,
            type: input.type,
            display_name: input.displayName,
            enabled: input.enabled ?? true,
            settings,
            client_secret_sealed: typeof input.clientSecret === 'string' ? box.encrypt(input.clientSecret, secretAad(id)) : null,
            sp_certificate: sp?.certificatePem ?? null,
            sp_private_key_sealed: sp ? box.encrypt(sp.privateKeyPem, spKeyAad(id)) : null,
            allowed_domains: domainsOf(input.allowedDomains) ?? [],
            jit_provisioning: input.jitProvisioning ?? true,
            account_linking: input.accountLinking ?? 'prove-control',
            trust_email: input.trustEmail ?? false,
            trust_upstream_mfa: input.trustUpstreamMfa ?? false,
          }, trx);
          await events.record({ type: 'identity_provider.created', ...target(id, stored.tenant_id), ...byOperator(context), payload: { identityProvider: identityProviderPayload(toProvider(stored)) } }, trx);
          return stored;
        });
        await changed();
        return toProvider(row);
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_IDP_DUPLICATE');
        throw err;
      }
    },

    async list(scope: TenantScope, page: number, pageSize: number) {
      const { rows, total } = await repo.list(scope.tenantId, (page - 1) * pageSize, pageSize);
      return { rows: rows.map(toProvider), total };
    },

    async get(scope: TenantScope, id: string): Promise<IdentityProvider> {
      return toProvider(await find(scope, id));
    },

    /** Changes what the input names; the type and alias stay (links and callback URLs hang on them). */
    async update(scope: TenantScope, id: string, input: IdentityProviderInput, context: ChangeContext = {}): Promise<IdentityProvider> {
      const before = await find(scope, id);
      const settings = await settingsOf(before.type, input, before.settings);
      const secret = input.clientSecret;
      checkSecret(before.type, settings, secret === undefined ? before.client_secret_sealed !== null : secret !== null);
      const changes: IdentityProviderChanges = {
        settings,
        ...(secret !== undefined ? { client_secret_sealed: secret === null ? null : box.encrypt(secret, secretAad(id)) } : {}),
        ...(input.displayName !== undefined ? { display_name: input.displayName } : {}),
        ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
        ...(input.allowedDomains !== undefined ? { allowed_domains: domainsOf(input.allowedDomains)! } : {}),
        ...(input.jitProvisioning !== undefined ? { jit_provisioning: input.jitProvisioning } : {}),
        ...(input.accountLinking !== undefined ? { account_linking: input.accountLinking } : {}),
        ...(input.trustEmail !== undefined ? { trust_email: input.trustEmail } : {}),
        ...(input.trustUpstreamMfa !== undefined ? { trust_upstream_mfa: input.trustUpstreamMfa } : {}),
      };
      const row = await deps.transaction(async (trx) => {
        const updated = await repo.update(id, changes, trx);
        if (!updated) throw new AppError('IDENT_IDP_NOT_FOUND');
        await events.record({
          type: 'identity_provider.updated', ...target(id, updated.tenant_id), ...byOperator(context),
          // The names of the fields the request set (clientSecret among them when it rotated), never their values.
          payload: { identityProvider: identityProviderPayload(toProvider(updated)), changed: Object.keys(input).filter((k) => input[k as keyof IdentityProviderInput] !== undefined).sort() },
        }, trx);
        return updated;
      });
      await changed();
      return toProvider(row);
    },

    /** Deletes the provider and every link to it: its users keep their accounts and other ways in. */
    async remove(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<void> {
      await find(scope, id);
      await deps.transaction(async (trx) => {
        const deleted = await repo.delete(id, trx);
        if (!deleted) throw new AppError('IDENT_IDP_NOT_FOUND');
        await events.record({ type: 'identity_provider.deleted', ...target(id, deleted.tenant_id), ...byOperator(context), payload: { identityProvider: identityProviderPayload(toProvider(deleted)) } }, trx);
      });
      await changed();
    },

    /** The enabled providers, for the login page (cached, shared invalidation); with `tenantId`, that tenant's only. */
    async enabled(tenantId?: string): Promise<IdentityProvider[]> {
      const all = (await enabled.get('enabled')) ?? [];
      return tenantId === undefined ? all : all.filter((p) => p.tenantId === tenantId);
    },

    /** An enabled provider by alias (unique across tenants: it names the provider's URLs), for the sign-in routes; with `tenantId`, only if it is that tenant's. */
    async enabledByAlias(alias: string, tenantId?: string): Promise<IdentityProvider | undefined> {
      return (await enabled.get('enabled'))?.find((p) => p.alias === alias && (tenantId === undefined || p.tenantId === tenantId));
    },

    /** The enabled OpenID Connect providers whose issuer is exactly `issuer` (token exchange). */
    async enabledByIssuer(issuer: string): Promise<Array<Extract<IdentityProvider, { type: 'oidc' }>>> {
      return ((await enabled.get('enabled')) ?? []).filter((p): p is Extract<IdentityProvider, { type: 'oidc' }> => p.type === 'oidc' && p.oidc.issuer === issuer);
    },

    /** The client secret, for the token request only. */
    async clientSecret(provider: IdentityProvider): Promise<string | undefined> {
      const row = await repo.findById(provider.id);
      return row?.client_secret_sealed ? box.decrypt(row.client_secret_sealed, secretAad(row.id)) : undefined;
    },

    /**
     * Our SAML SP's key and certificate for this provider, for its metadata and signed requests
     * only. A provider registered before SP keys existed gets one now (the first writer wins).
     */
    async samlServiceProviderKey(provider: IdentityProvider): Promise<SigningIdentity> {
      let row = await load(provider.id);
      if (!row.sp_certificate || !row.sp_private_key_sealed) {
        const made = await selfSignedIdentity(`sp-${row.alias}`);
        await repo.setSpKeyIfAbsent(row.id, made.certificatePem, box.encrypt(made.privateKeyPem, spKeyAad(row.id)));
        row = await load(provider.id);
      }
      return { certificatePem: row.sp_certificate!, privateKeyPem: box.decrypt(row.sp_private_key_sealed!, spKeyAad(row.id)) };
    },
  };
}

function toProvider(row: IdentityProviderRow): IdentityProvider {
  const common: Common = {
    id: row.id,
    tenantId: row.tenant_id,
    alias: row.alias,
    displayName: row.display_name,
    enabled: row.enabled,
    allowedDomains: row.allowed_domains,
    jitProvisioning: row.jit_provisioning,
    accountLinking: row.account_linking,
    trustEmail: row.trust_email,
    trustUpstreamMfa: row.trust_upstream_mfa,
    hasClientSecret: row.client_secret_sealed !== null,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
  if (row.type === 'oidc') return { ...common, type: 'oidc', oidc: row.settings as unknown as OidcSettings };
  if (row.type === 'oauth2') return { ...common, type: 'oauth2', oauth2: row.settings as unknown as OAuth2Settings };
  return { ...common, type: 'saml', saml: row.settings as unknown as SamlSettings };
}

export type IdentityProviders = ReturnType<typeof createIdentityProviders>;
