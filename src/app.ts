import { readFileSync } from 'node:fs';
import type { JSONWebKeySet } from 'jose';
import path from 'node:path';
import type Router from '@koa/router';
import type { Knex } from 'knex';
import type { Accounts } from './domain/authn/accounts.ts';
import type { AcrLevel } from './domain/authn/sign-in-flow.ts';
import type { KeySet } from './domain/keys/keys.ts';
import type { ResourceServers } from './domain/clients/resource-servers.ts';
import type { Federation } from './domain/federation/federation.ts';
import { federationCallbackRoutes } from './http/federation-callback.ts';
import { createFederationBinding } from './http/federation-binding.ts';
import { samlRoutes } from './http/saml-routes.ts';
import { recordSignOuts } from './http/sign-out-events.ts';
import { healthRoutes } from './http/health.ts';
import { addWelcomeRoutes } from './http/welcome.ts';
import { createCsrf, createFormCsrf } from './http/interaction/csrf.ts';
import { accountPageRoutes } from './http/pages/account-pages.ts';
import { interactionRoutes } from './http/interaction/router.ts';
import { errorHandler } from './http/middleware/errors.ts';
import { rejectNul } from './http/middleware/reject-nul.ts';
import { rejectRepeatedQuery } from './http/middleware/reject-repeated-query.ts';
import { requestContext } from './http/middleware/request-context.ts';
import { securityHeaders } from './http/middleware/security-headers.ts';
import { uiLocale } from './http/middleware/ui-locale.ts';
import { requestSteps } from './http/middleware/request-steps.ts';
import { ownRoutes, type MountedRouter } from './http/middleware/own-routes.ts';
import { traceRequests } from './http/middleware/trace-context.ts';
import { activeTracing } from './infra/tracing.ts';
import type { Metrics } from './infra/metrics.ts';
import { createRenderer } from './http/render.ts';
import type { SecretBox } from './infra/crypto.ts';
import type { EphemeralStore } from './infra/ephemeral/index.ts';
import type { Logger } from './infra/logger.ts';
import { projectRoot } from './infra/paths.ts';
import { createProvider, type Provider } from './oidc/provider.ts';
import { settleHeldWrites } from './oidc/adapter.ts';
import { heldWrites } from './http/middleware/held-writes.ts';
import { isHttpsIssuer } from './oidc/transport.ts';
import type { TokenSettings } from './oidc/configuration/tokens.ts';
import type { ClientRegistry } from './domain/clients/clients.ts';
import type { UserAdmin } from './domain/accounts/user-admin.ts';
import type { UserMerge } from './domain/accounts/user-merge.ts';
import type { IdempotencyRepo } from './repos/idempotency.ts';
import { adminApiRoutes } from './http/api/routes.ts';
import type { Webhooks } from './domain/webhooks/webhooks.ts';
import type { BackchannelLogouts } from './domain/webhooks/backchannel-logout.ts';
import type { AuditLog } from './domain/events/audit.ts';
import type { EventStream } from './domain/events/stream.ts';
import { eventStreamRoutes } from './http/api/event-stream.ts';
import type { OidcPayloadsRepo } from './repos/oidc-payloads.ts';
import { accountConsoleRoutes } from './http/account/console.ts';
import type { AccountFlowDeps } from './http/account-flows.ts';
import { accountApiRoutes, accountOperations } from './http/api/account-routes.ts';
import { captchaAssetRoutes } from './http/captcha-assets.ts';
import { webauthnAssetRoutes } from './http/webauthn-assets.ts';
import type { Tenants } from './domain/tenants/tenants.ts';
import type { ApiKeys } from './domain/access/api-keys.ts';
import type { Access } from './domain/access/access.ts';

/** Everything a provider instance needs; built once per process by runtime.ts. */
export interface AppDeps {
  issuer: string;
  trustProxy: boolean;
  proxyHops: number;
  loginRateLimitPerIp: number;
  tokens: TokenSettings;
  db: Knex;
  ephemeral: EphemeralStore;
  logger: Logger;
  box: SecretBox;
  accounts: Accounts;
  resourceServers: ResourceServers;
  federation: Federation;
  payloads: OidcPayloadsRepo;
  clients: ClientRegistry;
  adminAudience: string;
  userAdmin: UserAdmin;
  userMerge: UserMerge;
  idempotency: IdempotencyRepo;
  account: AccountFlowDeps;
  /** Where this instance answers on the loopback (the account console's back channel). */
  internalOrigin: () => string;
  /** ACR_VALUES, weakest first. */
  acrValues: readonly AcrLevel[];
  /** NODE_ENV is not production: the welcome page shows how to try a sign-in. */
  development: boolean;
  metrics: Metrics;
  webhooks: Webhooks;
  backchannelLogouts: BackchannelLogouts;
  /** The audit trail (GET /api/v1/audit/events) and its live stream (GET /api/v1/events/stream). */
  audit: AuditLog;
  eventStream: EventStream;
  tenants: Tenants;
  apiKeys: ApiKeys;
  /** Roles and service accounts (admin API, RBAC at the token endpoint, /me/access-context). */
  access: Access;
}


const renderPage = createRenderer();
// The provider's endpoints that are called per token (or per page load, for discovery and keys).
const PROVIDER_ENDPOINTS = ['token', 'introspection', 'revocation', 'userinfo', 'jwks', 'authorization', 'end_session'] as const;
const stylesheet = readFileSync(path.join(projectRoot(), 'views', 'assets', 'app.css'));
const formsScript = readFileSync(path.join(projectRoot(), 'views', 'assets', 'forms.js'));

/**
 * The provider is itself the Koa application: our middleware and routers go in with
 * provider.use(), ahead of its own routes, so there is one ctx and one set of cookie keys.
 */
export function buildApp(deps: AppDeps, keys: KeySet): Provider {
  const provider = createProvider({ ...deps, keys, renderPage, mfaPolicy: deps.account.mfaPolicy });
  const loginLimiter = deps.ephemeral.limiter('login-ip', deps.loginRateLimitPerIp, 60);

  // Health checks, the JWKS alias, the stylesheet and the welcome page share one router: fewer
  // matchers per request.
  const misc = healthRoutes({ db: deps.db, ephemeral: deps.ephemeral });
  addWelcomeRoutes(misc, { issuer: deps.issuer, development: deps.development, renderPage });
  misc.get('/.well-known/jwks.json', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=60');
    ctx.body = keys.publicJwks;
  });
  misc.get('/assets/app.css', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.type = 'text/css';
    ctx.body = stylesheet;
  });
  misc.get('/assets/forms.js', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=3600');
    ctx.type = 'text/javascript; charset=utf-8';
    ctx.body = formsScript;
  });

  const federationBinding = createFederationBinding(deps.issuer);
  const interactions = interactionRoutes({
    provider,
    accounts: deps.accounts,
    csrf: createCsrf(deps.box),
    renderPage,
    loginLimiter,
    account: deps.account,
    acrLevels: deps.acrValues,
    federation: deps.federation,
    federationBinding,
    flowLimiter: deps.ephemeral.limiter('auth-pages-ip', deps.account.authRateLimitPerIp, 60),
  });
  const accountPages = accountPageRoutes({ provider, account: deps.account, ephemeral: deps.ephemeral, csrf: createFormCsrf(deps.box, deps.issuer), renderPage });

  // Our routers, mounted ahead of the provider's routes. Their routes take each query parameter
  // once (rejectRepeatedQuery); the provider's own endpoints judge theirs.
  // They go in as one middleware (ownRoutes, at the end) that the provider's endpoints skip.
  const ownRouters: Router[] = [];
  const mounted: MountedRouter[] = [];
  const mount = (router: Router, opts: { allowedMethods: boolean }) => {
    ownRouters.push(router);
    mounted.push({ router, allowedMethods: opts.allowedMethods });
  };

  provider.use(requestContext(deps.logger, deps.metrics));
  const tracing = activeTracing();
  if (tracing) provider.use(traceRequests(tracing));
  // Every token endpoint success, by grant type (the provider has refused unsupported ones by then).
  provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: unknown } } }) => {
    deps.metrics.tokensIssued.inc({ grant_type: String(ctx.oidc.params?.grant_type ?? 'unknown') });
  });
  recordSignOuts(provider, deps.accounts, deps.logger);
  provider.use(errorHandler(deps.logger, renderPage));
  // Plain steps, in one layer; the headers first, so an answer refused by a later step has them too.
  provider.use(
    requestSteps(
      securityHeaders({ httpsIssuer: isHttpsIssuer(deps.issuer) }),
      rejectNul(),
      uiLocale(deps.issuer),
      rejectRepeatedQuery((ctx) => ownRouters.some((router) => router.match(ctx.path, ctx.method).route)),
    ),
  );
  provider.use(heldWrites({ authorization: provider.pathFor('authorization'), token: provider.pathFor('token') }, () => settleHeldWrites(deps.payloads)));
  mount(misc, { allowedMethods: false });
  const accountApiDeps = { provider, ephemeral: deps.ephemeral, account: deps.account, federation: deps.federation, access: deps.access };
  const accountOps = accountOperations(accountApiDeps);
  const adminApi = adminApiRoutes({
    issuer: deps.issuer,
    audience: deps.adminAudience,
    publicJwks: keys.publicJwks as JSONWebKeySet,
    tenants: deps.tenants,
    provider,
    users: deps.userAdmin,
    clients: deps.clients,
    resourceServers: deps.resourceServers,
    identityProviders: deps.federation.identityProviders,
    webhooks: deps.webhooks,
    idempotency: deps.idempotency,
    box: deps.box,
    accountOperations: accountOps,
    audit: deps.audit,
    apiKeys: deps.apiKeys,
    userMerge: deps.userMerge,
    access: deps.access,
  });
  // The account API shares the /api/v1 prefix; it goes first so the admin router's 405s do not
  // answer its paths.
  const accountApi = accountApiRoutes(accountApiDeps, accountOps);
  mount(accountApi, { allowedMethods: true });
  mount(federationCallbackRoutes({ issuer: deps.issuer, federation: deps.federation, binding: federationBinding, renderPage, logger: deps.logger }), { allowedMethods: true });
  mount(samlRoutes({ federation: deps.federation, binding: federationBinding, renderPage, logger: deps.logger }), { allowedMethods: true });
  mount(captchaAssetRoutes(), { allowedMethods: false });
  mount(webauthnAssetRoutes(), { allowedMethods: false });
  mount(adminApi, { allowedMethods: true });
  // Server-sent events: a plain route that writes the response itself (nothing buffers it).
  mount(eventStreamRoutes({
    issuer: deps.issuer, audience: deps.adminAudience, publicJwks: keys.publicJwks as JSONWebKeySet, tenants: deps.tenants, apiKeys: deps.apiKeys, stream: deps.eventStream, logger: deps.logger,
  }), { allowedMethods: true });
  mount(interactions, { allowedMethods: true });
  mount(accountPages, { allowedMethods: true });
  const accountConsole = accountConsoleRoutes({
    provider,
    issuer: deps.issuer,
    internalOrigin: deps.internalOrigin,
    selfService: deps.account.selfService,
    mfa: deps.account.mfa,
    codeFactors: deps.account.codeFactors,
    webauthn: deps.account.webauthn,
    federation: deps.federation,
    federationBinding,
    ephemeral: deps.ephemeral,
    box: deps.box,
    renderPage,
    logger: deps.logger,
    userLimiter: deps.ephemeral.limiter('me-api-user', deps.account.meRateLimitPerUser, 60),
    anonymousLimiter: deps.ephemeral.limiter('account-console-ip', deps.account.authRateLimitPerIp, 60),
  });
  mount(accountConsole, { allowedMethods: true });
  // pathFor throws for an endpoint whose feature is off: such a path is simply not skipped.
  const providerPaths = PROVIDER_ENDPOINTS.flatMap((name) => {
    try {
      return [provider.pathFor(name)];
    } catch {
      return [];
    }
  });
  provider.use(ownRoutes(mounted, providerPaths));
  return provider;
}
