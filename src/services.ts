import type { AppConfig } from './config/schema.ts';
import { createAccounts } from './domain/authn/accounts.ts';
import { adminAudience } from './domain/clients/admin-scopes.ts';
import { createClientRegistry } from './domain/clients/clients.ts';
import { createKeyService } from './domain/keys/keys.ts';
import { createPasswordPolicy } from './domain/authn/password-policy.ts';
import { createPasswordHasher, type PasswordHasher } from './domain/authn/passwords.ts';
import { concurrencyGate, HASHES_AT_ONCE } from './infra/thread-pool.ts';
import { createResourceServers } from './domain/clients/resource-servers.ts';
import { SecretBox } from './infra/crypto.ts';
import { createDb, type Db } from './infra/db.ts';
import { lockDataDir, SERVER_OPENER, type DataDirOpener } from './infra/data-dir-lock.ts';
import { createEphemeralStore, RedisUnreachable } from './infra/ephemeral/index.ts';
import { describeUnreachableDatabase } from './infra/pg-outages.ts';
import { StartupError } from './domain/errors.ts';
import { resolveKeyEncryptionKey } from './infra/key-encryption-key.ts';
import type { Logger } from './infra/logger.ts';
import { activeTracing, startTracing, traceMethods } from './infra/tracing.ts';
import { migrateLatest } from './infra/migrate.ts';
import { createClientsRepo } from './repos/clients.ts';
import { createOidcPayloadsRepo } from './repos/oidc-payloads.ts';
import { createResourceServersRepo } from './repos/resource-servers.ts';
import { createTenantsRepo } from './repos/tenants.ts';
import { createTenants } from './domain/tenants/tenants.ts';
import { createApiKeysRepo } from './repos/api-keys.ts';
import { createApiKeys } from './domain/access/api-keys.ts';
import { createRolesRepo } from './repos/roles.ts';
import { createServiceAccountsRepo } from './repos/service-accounts.ts';
import { createRoles } from './domain/access/roles.ts';
import { createServiceAccounts } from './domain/access/service-accounts.ts';
import type { Access } from './domain/access/access.ts';
import { createIdentityProvidersRepo } from './repos/identity-providers.ts';
import { createIdentityProviders, federationEndpoints } from './domain/federation/identity-providers.ts';
import { createFederatedIdentitiesRepo } from './repos/federated-identities.ts';
import { createFederatedAccounts } from './domain/federation/federated-accounts.ts';
import { createUpstreamOAuth } from './domain/federation/upstream-oauth.ts';
import { createFederationRecords } from './domain/federation/sign-in-records.ts';
import { createSamlServiceProvider } from './domain/federation/saml-sp.ts';
import { createUpstreamTokens } from './domain/federation/upstream-tokens.ts';
import { createServerKeysRepo } from './repos/server-keys.ts';
import { createUsersRepo } from './repos/users.ts';
import { createIdempotencyRepo } from './repos/idempotency.ts';
import { createEventsRepo } from './repos/events.ts';
import { createEventRecorder } from './domain/events/events.ts';
import { createEventsReader } from './repos/events.ts';
import { createAuditLog, createAuditRetention } from './domain/events/audit.ts';
import { createEventStream } from './domain/events/stream.ts';
import { createMetrics, type MetricSources } from './infra/metrics.ts';
import { createUserAdmin } from './domain/accounts/user-admin.ts';
import { createUserMerge } from './domain/accounts/user-merge.ts';
import { createUserMergeRepo } from './repos/user-merge.ts';
import { createIdentityDirectory } from './domain/accounts/identity-directory.ts';
import { createIdentityDirectoryRepo } from './repos/identity-directory.ts';
import { createOutboxRepo } from './repos/outbox.ts';
import { createMailOutbox } from './domain/mail/mail.ts';
import { createAccountLinks } from './domain/accounts/account-links.ts';
import type { FlowServices } from './domain/accounts/account-flow.ts';
import { createEmailVerification } from './domain/accounts/email-verification.ts';
import { createAddressProof } from './domain/accounts/address-proof.ts';
import { createMagicLinks } from './domain/authn/magic-links.ts';
import { OneTimeCodes } from './domain/authn/one-time-codes.ts';
import { createPasswordReset } from './domain/accounts/password-reset.ts';
import { createRegistration } from './domain/accounts/registration.ts';
import type { RegistrationPolicy } from './domain/accounts/registration-policy.ts';
import { createSelfService } from './domain/accounts/self-service.ts';
import { createMfaFactorsRepo } from './repos/mfa-factors.ts';
import { createFactorChanges } from './domain/authn/factor-changes.ts';
import { createFactorGuard } from './domain/authn/factor-guard.ts';
import { createMfa, MFA_DEFAULTS } from './domain/authn/mfa.ts';
import { createCodeFactors } from './domain/authn/code-factors.ts';
import { createSmsSender } from './infra/sms.ts';
import { createWebAuthnCredentialsRepo } from './repos/webauthn-credentials.ts';
import { createWebAuthn } from './domain/authn/webauthn.ts';
import { createWebhooksRepo } from './repos/webhooks.ts';
import { createWebhooks } from './domain/webhooks/webhooks.ts';
import { createBackchannelLogouts, withBackchannelLogout, type BackchannelLogouts } from './domain/webhooks/backchannel-logout.ts';

/** Password hashes at most HASHES_AT_ONCE at a time (infra/thread-pool.ts: each holds ARGON2_MEMORY_KIB for good). */
function gatedHasher(hasher: PasswordHasher): PasswordHasher {
  const gate = concurrencyGate(HASHES_AT_ONCE);
  return {
    hash: (password) => gate(() => hasher.hash(password)),
    verify: (hash, password) => gate(() => hasher.verify(hash, password)),
  };
}

/** The knex (tarn) pool's counters; undefined before the pool exists or on a client without one. */
function poolUse(db: Db) {
  const pool = (db.client as { pool?: { numUsed(): number; numFree(): number; numPendingAcquires(): number; max: number } }).pool;
  if (!pool) return undefined;
  return { used: pool.numUsed(), free: pool.numFree(), pending: pool.numPendingAcquires(), max: pool.max };
}

/**
 * Stores, repositories and domain services of one process; shared by the server (runtime.ts), the
 * CLI and the bench. The embedded store is locked to this process until close() (or its exit).
 */
export async function createServices(config: AppConfig, logger: Logger, opener: DataDirOpener = SERVER_OPENER) {
  const lock = config.DATABASE_URL ? undefined : lockDataDir(config.DATA_DIR, opener);
  const services = await openServices(config, logger).catch((err: unknown) => { lock?.release(); throw err; });
  return { ...services, close: () => services.close().finally(() => lock?.release()) };
}

async function openServices(config: AppConfig, logger: Logger) {
  const stopTracing = await startTracing(config, logger);
  let db: Db;
  try {
    db = createDb({
      databaseUrl: config.DATABASE_URL,
      dataDir: config.DATA_DIR,
      poolMax: config.DB_POOL_MAX,
      statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
      acquireTimeoutMs: config.DB_ACQUIRE_TIMEOUT_MS,
      logger,
    });
  } catch (err) {
    // The embedded database's directory cannot be made (read-only volume, wrong owner).
    const code = (err as NodeJS.ErrnoException).code;
    if (code) throw new StartupError(`DATA_DIR: cannot create the embedded database under ${config.DATA_DIR} (${code})`);
    throw err;
  }
  activeTracing()?.traceQueries(db);
  const applied = await migrateLatest(db).catch(async (err: unknown) => {
    await db.destroy();
    const unreachable = config.DATABASE_URL ? describeUnreachableDatabase(err, config.DATABASE_URL) : undefined;
    throw unreachable ? new StartupError(`DATABASE_URL: ${unreachable}`) : err;
  });
  if (applied.length) logger.info({ applied }, 'migrations applied');
  const ephemeral = await createEphemeralStore({
    redisUrl: config.REDIS_URL,
    keyPrefix: config.REDIS_KEY_PREFIX,
    redisCommandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    memoryMaxEntries: config.MEMORY_STORE_MAX_ENTRIES,
    logger,
  }).catch(async (err: unknown) => {
    await db.destroy();
    throw err instanceof RedisUnreachable ? new StartupError(`REDIS_URL: ${err.message}`) : err;
  });
  const box = new SecretBox(resolveKeyEncryptionKey(config.KEY_ENCRYPTION_KEY, config.DATA_DIR, logger));
  const repos = {
    users: createUsersRepo(db),
    clients: createClientsRepo(db),
    resourceServers: createResourceServersRepo(db),
    identityProviders: createIdentityProvidersRepo(db),
    federatedIdentities: createFederatedIdentitiesRepo(db),
    // Ending sessions outside the provider's logout also notifies relying parties (back-channel logout).
    payloads: withBackchannelLogout(createOidcPayloadsRepo(db), () => backchannelLogouts),
    serverKeys: createServerKeysRepo(db),
    idempotency: createIdempotencyRepo(db),
    events: createEventsRepo(db),
    outbox: createOutboxRepo(db),
    mfaFactors: createMfaFactorsRepo(db),
    webauthnCredentials: createWebAuthnCredentialsRepo(db),
    webhooks: createWebhooksRepo(db),
    tenants: createTenantsRepo(db),
    apiKeys: createApiKeysRepo(db),
    roles: createRolesRepo(db),
    serviceAccounts: createServiceAccountsRepo(db),
  };
  const events = createEventRecorder(repos.events);
  const tenants = createTenants({ repo: repos.tenants, events, transaction: (work) => db.transaction(work) });
  // Webhooks: every event an enabled webhook subscribes to is queued in the event's transaction.
  const webhooks = createWebhooks({
    repo: repos.webhooks, box, ephemeral,
    settings: { allowPrivateNetworks: config.WEBHOOK_ALLOW_PRIVATE_NETWORKS, retryWindowMs: config.WEBHOOK_RETRY_WINDOW_SECONDS * 1000 },
  });
  events.addSink(webhooks.sink);
  await webhooks.ready;
  // The audit trail: read by the admin API, kept AUDIT_RETENTION_DAYS, and live for dashboards.
  const eventsReader = createEventsReader(db);
  const audit = createAuditLog({ reader: eventsReader, users: repos.users, box });
  const auditRetention = createAuditRetention({ reader: eventsReader, days: config.AUDIT_RETENTION_DAYS });
  const eventStream = createEventStream({ reader: eventsReader, ephemeral, recorder: events, logger });
  const metrics = createMetrics();
  const mail = createMailOutbox({ repo: repos.outbox, box });
  const hasher = traceMethods(gatedHasher(createPasswordHasher({
    memoryCost: config.ARGON2_MEMORY_KIB,
    timeCost: config.ARGON2_ITERATIONS,
    parallelism: config.ARGON2_PARALLELISM,
  })), { hash: 'argon2 hash', verify: 'argon2 verify' });
  // Rules for new passwords: registration, reset and change.
  const passwordPolicy = createPasswordPolicy({
    minLength: config.PASSWORD_MIN_LENGTH,
    minScore: config.PASSWORD_MIN_SCORE,
    breachedRangeUrl: config.HIBP_RANGE_URL,
    logger,
  });
  const keys = createKeyService({
    repo: repos.serverKeys,
    box,
    timings: {
      propagationSeconds: config.KEY_PROPAGATION_SECONDS,
      maxSignedTtlSeconds: Math.max(config.ACCESS_TOKEN_TTL_SECONDS, config.ID_TOKEN_TTL_SECONDS),
      cookieTtlSeconds: config.SESSION_TTL_SECONDS,
    },
    events,
  });
  // Every entry point (server, CLI, bench) stops here, with one line, when the key does not match.
  try {
    await keys.checkKeyEncryptionKey();
  } catch (err) {
    await ephemeral.close();
    await db.destroy();
    throw err;
  }
  const accounts = createAccounts({
    users: repos.users,
    hasher,
    ephemeral,
    lockout: { threshold: config.LOCKOUT_THRESHOLD, durationSeconds: config.LOCKOUT_DURATION_SECONDS },
    events,
    transaction: (work) => db.transaction(work),
    onBackgroundError: (err: unknown) => logger.error({ err }, 'sign-in failure bookkeeping failed'),
    observer: {
      outcome: (outcome) => metrics.signIns.inc({ outcome }),
      lockedOut: () => metrics.lockouts.inc(),
    },
  });
  const resourceServers = createResourceServers({
    repo: repos.resourceServers,
    ephemeral,
    reserved: [adminAudience(config.ISSUER)],
    events,
    transaction: (work) => db.transaction(work),
  });
  const clients = createClientRegistry({ repo: repos.clients, box, ephemeral, payloads: repos.payloads, resourceServers, events, transaction: (work) => db.transaction(work) });
  // Relying parties with a backchannel_logout_uri hear of every session that ends (repos.payloads above).
  const backchannelLogouts: BackchannelLogouts = createBackchannelLogouts({
    repo: repos.webhooks,
    wantsLogouts: async (clientId) => typeof (await clients.find(clientId))?.metadata.backchannel_logout_uri === 'string',
    retryWindowMs: config.WEBHOOK_RETRY_WINDOW_SECONDS * 1000,
  });
  resourceServers.onScopesWithdrawn((identifier, kept, context) => clients.withdrawResourceGrants(identifier, kept, context));
  // Roles (RBAC at resource servers, the roles claim, /me/access-context) and service accounts.
  const roles = createRoles({
    repo: repos.roles, users: repos.users, serviceAccounts: repos.serviceAccounts, tenants: repos.tenants, resourceServers, events,
    transaction: (work) => db.transaction(work),
  });
  const access: Access = { roles, serviceAccounts: createServiceAccounts({ repo: repos.serviceAccounts, clients, roles, ephemeral, events }) };
  const identityProviders = createIdentityProviders({ repo: repos.identityProviders, box, ephemeral, events, transaction: (work) => db.transaction(work) });
  // Signing in through upstream providers: their protocols, and which local account each identity is.
  const upstream = createUpstreamOAuth({ identityProviders, redirectUri: (p) => federationEndpoints(config.ISSUER, p).redirectUri! });
  const federation = {
    identityProviders,
    records: createFederationRecords(ephemeral),
    upstream,
    tokens: createUpstreamTokens({ identityProviders, upstream }),
    saml: createSamlServiceProvider({ issuer: config.ISSUER, identityProviders, ephemeral, clockSkewSeconds: config.SAML_CLOCK_SKEW_SECONDS }),
    accounts: createFederatedAccounts({
      links: repos.federatedIdentities, users: repos.users, accounts, events, payloads: repos.payloads, transaction: (work) => db.transaction(work),
    }),
  };

  // The account lifecycle: every code and link of its flows goes through one OneTimeCodes.
  const transaction = <T>(work: (trx: import('knex').Knex.Transaction) => Promise<T>) => db.transaction(work);
  const codes = new OneTimeCodes(ephemeral, box);
  const links = createAccountLinks(config.ISSUER);
  const flow: FlowServices = {
    users: repos.users, codes, mail, events, links, transaction,
    onBackgroundError: (err: unknown) => logger.error({ err }, 'account flow background work failed'),
  };
  const addressProof = createAddressProof({ ...flow, payloads: repos.payloads, ephemeral, box });
  const verification = createEmailVerification({ ...flow, addressProof });
  const registrationDefaults: RegistrationPolicy = {
    enabled: config.REGISTRATION_ENABLED,
    password: config.REGISTRATION_PASSWORD,
    welcomeMail: config.REGISTRATION_WELCOME_MAIL,
    requireEmailVerification: config.REGISTRATION_REQUIRE_EMAIL_VERIFICATION,
  };
  const registration = createRegistration({ ...flow, hasher, passwordPolicy, verification, addressProof, ephemeral });
  const passwordReset = createPasswordReset({
    ...flow, hasher, passwordPolicy, payloads: repos.payloads, ephemeral, isLocked: (user) => accounts.isLocked(user),
    limits: {
      perEmail: ephemeral.limiter('reset-email', config.PASSWORD_RESET_LIMIT_PER_HOUR, 3600),
      perEmailDaily: ephemeral.limiter('reset-email-day', codes.settings('forgot-password').dailyQuota, 24 * 3600),
      perIp: ephemeral.limiter('reset-ip', config.PASSWORD_RESET_LIMIT_PER_HOUR, 3600),
    },
  });
  const magicLinks = createMagicLinks({ ...flow, addressProof });
  const selfService = createSelfService({
    users: repos.users, hasher, passwordPolicy, mail, events, links, payloads: repos.payloads, transaction,
    lockout: { threshold: config.LOCKOUT_THRESHOLD, durationSeconds: config.LOCKOUT_DURATION_SECONDS },
  });
  // Second factors: the account API manages them, the sign-in step checks them. Every factor type
  // shares the guard on wrong answers and what a change of factors does besides the change.
  const factorGuard = createFactorGuard({
    users: repos.users, repo: repos.mfaFactors, ephemeral, events, accounts,
    settings: { maxAttempts: MFA_DEFAULTS.maxAttempts, lockSeconds: MFA_DEFAULTS.lockSeconds },
  });
  const factorChanges = createFactorChanges({ users: repos.users, events, mail, links, payloads: repos.payloads });
  const mfa = createMfa({
    repo: repos.mfaFactors, payloads: repos.payloads, box, ephemeral, events, mail, links, guard: factorGuard, changes: factorChanges, transaction,
    settings: { ...MFA_DEFAULTS, issuerName: new URL(config.ISSUER).hostname },
    policy: config.MFA_POLICY,
  });
  // SMS and email codes as second factors: sent and checked through the one-time-code scheme.
  const sms = createSmsSender({
    provider: config.SMS_PROVIDER, webhookUrl: config.SMS_WEBHOOK_URL, webhookToken: config.SMS_WEBHOOK_TOKEN, timeoutMs: config.SMS_WEBHOOK_TIMEOUT_MS,
  }, logger);
  const codeFactors = createCodeFactors({
    repo: repos.mfaFactors, codes, sms, mail, guard: factorGuard, changes: factorChanges, transaction,
    issuerName: new URL(config.ISSUER).hostname, enrollmentTtlSeconds: MFA_DEFAULTS.enrollmentTtlSeconds,
  });
  // Security keys and passkeys, for the relying party ISSUER names (its host name, its origin).
  const issuerUrl = new URL(config.ISSUER);
  const webauthn = createWebAuthn({
    credentials: repos.webauthnCredentials, factors: repos.mfaFactors, users: repos.users, accounts, ephemeral, events,
    guard: factorGuard, changes: factorChanges, transaction,
    settings: { rpId: issuerUrl.hostname, origin: issuerUrl.origin, rpName: issuerUrl.hostname },
  });
  // Admin API keys: read by primary key on every use (no cache), so a revocation holds everywhere at once.
  const apiKeys = createApiKeys({
    repo: repos.apiKeys, box, events, transaction,
    settings: { lastUsedResolutionSeconds: 60 },
    onBackgroundError: (err: unknown) => logger.warn({ err }, 'recording an API key use failed'),
  });
  const userAdmin = createUserAdmin({
    users: repos.users, accounts, mfa, mfaPolicy: config.MFA_POLICY, hasher, payloads: repos.payloads, events, passwordPolicy, transaction,
    // Per tenant, in the shared store: every instance counts against the same budget.
    createLimiter: ephemeral.limiter('users-create-tenant', config.USERS_CREATE_RATE_LIMIT_PER_MINUTE, 60),
  });
  const userMerge = createUserMerge({ users: repos.users, repo: createUserMergeRepo(), payloads: repos.payloads, events, transaction });
  // The internal endpoints' lookups (src/http/internal).
  const identityDirectory = createIdentityDirectory({ repo: createIdentityDirectoryRepo(db), tenants });

  return {
    db,
    ephemeral,
    box,
    repos,
    keys,
    accounts,
    clients,
    resourceServers,
    identityProviders,
    federation,
    userAdmin,
    userMerge,
    identityDirectory,
    audit,
    auditRetention,
    eventStream,
    tenants,
    apiKeys,
    access,
    mail,
    passwordPolicy,
    codes,
    verification,
    addressProof,
    registration,
    registrationDefaults,
    passwordReset,
    magicLinks,
    selfService,
    mfa,
    sms,
    codeFactors,
    webauthn,
    events,
    webhooks,
    backchannelLogouts,
    metrics,
    /** What the scrape-time gauges read (runtime.ts turns them on with METRICS_PORT). */
    metricSources: {
      outbox: () => repos.outbox.pendingDepth(),
      async keys() {
        const now = Date.now();
        const newest = new Map<string, { use: string; alg: string; ageSeconds: number }>();
        // listLive is newest first: the first activated key of each use and algorithm is the one in force.
        for (const k of await repos.serverKeys.listLive()) {
          const id = `${k.use} ${k.alg}`;
          if (newest.has(id) || new Date(k.activates_at).getTime() > now) continue;
          newest.set(id, { use: k.use, alg: k.alg, ageSeconds: (now - new Date(k.created_at).getTime()) / 1000 });
        }
        return [...newest.values()];
      },
      pool: () => poolUse(db),
    } satisfies MetricSources,
    async close() {
      eventStream.close();
      await ephemeral.close();
      await db.destroy();
      await stopTracing();
    },
  };
}

export type Services = Awaited<ReturnType<typeof createServices>>;
