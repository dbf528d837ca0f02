import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp, type AppDeps } from './app.ts';
import type { AppConfig } from './config/schema.ts';
import { createAccounts } from './domain/accounts.ts';
import { adminAudience } from './domain/admin-scopes.ts';
import { createClientRegistry } from './domain/clients.ts';
import { createKeyService } from './domain/keys.ts';
import { createPasswordPolicy } from './domain/password-policy.ts';
import { createPasswordHasher } from './domain/passwords.ts';
import { createResourceServers } from './domain/resource-servers.ts';
import { SecretBox } from './infra/crypto.ts';
import { createDb, type Db } from './infra/db.ts';
import { createEphemeralStore } from './infra/ephemeral/index.ts';
import { resolveKeyEncryptionKey } from './infra/key-encryption-key.ts';
import type { Logger } from './infra/logger.ts';
import { migrateLatest } from './infra/migrate.ts';
import type { Provider } from './oidc/provider.ts';
import { createSweeper } from './oidc/sweeper.ts';
import { createClientsRepo } from './repos/clients.ts';
import { createOidcPayloadsRepo } from './repos/oidc-payloads.ts';
import { createResourceServersRepo } from './repos/resource-servers.ts';
import { createServerKeysRepo } from './repos/server-keys.ts';
import { createUsersRepo } from './repos/users.ts';
import { createIdempotencyRepo } from './repos/idempotency.ts';
import { createEventsRepo } from './repos/events.ts';
import { createEventRecorder } from './domain/events.ts';
import { createUserAdmin } from './domain/user-admin.ts';
import { ADMIN_SCOPES } from './domain/admin-scopes.ts';
import { createOutboxRepo } from './repos/outbox.ts';
import { createMailOutbox, createMailRenderer } from './domain/mail.ts';
import { createMailWorker } from './domain/mail-worker.ts';
import { createMailer } from './infra/mailer.ts';
import { createCaptcha } from './infra/captcha.ts';
import { createAccountLinks } from './domain/account-links.ts';
import { createEmailVerification } from './domain/email-verification.ts';
import { createMagicLinks } from './domain/magic-links.ts';
import { OneTimeCodes } from './domain/one-time-codes.ts';
import { createPasswordReset } from './domain/password-reset.ts';
import { createRegistration } from './domain/registration.ts';
import type { RegistrationPolicy } from './domain/registration-policy.ts';
import { createSelfService } from './domain/self-service.ts';
import { ensureAccountConsoleClient } from './http/account/client.ts';

/** Stores, repositories and domain services of one process; shared by the server and the CLI. */
export async function createServices(config: AppConfig, logger: Logger) {
  const db: Db = createDb({ databaseUrl: config.DATABASE_URL, dataDir: config.DATA_DIR, poolMax: config.DB_POOL_MAX });
  const applied = await migrateLatest(db);
  if (applied.length) logger.info({ applied }, 'migrations applied');
  const ephemeral = createEphemeralStore(config.REDIS_URL, config.REDIS_KEY_PREFIX);
  const box = new SecretBox(resolveKeyEncryptionKey(config.KEY_ENCRYPTION_KEY, config.DATA_DIR, logger));
  const repos = {
    users: createUsersRepo(db),
    clients: createClientsRepo(db),
    resourceServers: createResourceServersRepo(db),
    payloads: createOidcPayloadsRepo(db),
    serverKeys: createServerKeysRepo(db),
    idempotency: createIdempotencyRepo(db),
    events: createEventsRepo(db),
    outbox: createOutboxRepo(db),
  };
  const events = createEventRecorder(repos.events);
  const mail = createMailOutbox({ repo: repos.outbox, box });
  const hasher = createPasswordHasher({
    memoryCost: config.ARGON2_MEMORY_KIB,
    timeCost: config.ARGON2_ITERATIONS,
    parallelism: config.ARGON2_PARALLELISM,
  });
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
  });
  const accounts = createAccounts({
    users: repos.users,
    hasher,
    ephemeral,
    lockout: { threshold: config.LOCKOUT_THRESHOLD, durationSeconds: config.LOCKOUT_DURATION_SECONDS },
    events,
    transaction: (work) => db.transaction(work),
  });
  const clients = createClientRegistry({ repo: repos.clients, box, ephemeral });
  const resourceServers = createResourceServers({
    repo: repos.resourceServers,
    ephemeral,
    reserved: [adminAudience(config.ISSUER)],
  });
  const userAdmin = createUserAdmin({ users: repos.users, accounts, hasher, payloads: repos.payloads, events });

  // The account lifecycle: every code and link of its flows goes through one OneTimeCodes.
  const transaction = <T>(work: (trx: import('knex').Knex.Transaction) => Promise<T>) => db.transaction(work);
  const codes = new OneTimeCodes(ephemeral, box);
  const links = createAccountLinks(config.ISSUER);
  const onBackgroundError = (err: unknown) => logger.error({ err }, 'account flow background work failed');
  const verification = createEmailVerification({ users: repos.users, codes, mail, events, links, transaction, onBackgroundError });
  const registrationDefaults: RegistrationPolicy = {
    enabled: config.REGISTRATION_ENABLED,
    password: config.REGISTRATION_PASSWORD,
    welcomeMail: config.REGISTRATION_WELCOME_MAIL,
    requireEmailVerification: config.REGISTRATION_REQUIRE_EMAIL_VERIFICATION,
  };
  const registration = createRegistration({
    users: repos.users, hasher, passwordPolicy, verification, codes, mail, events, links, ephemeral, transaction,
  });
  const passwordReset = createPasswordReset({
    users: repos.users, hasher, passwordPolicy, codes, mail, events, links, payloads: repos.payloads, transaction, onBackgroundError,
    limits: {
      perEmail: ephemeral.limiter('reset-email', config.PASSWORD_RESET_LIMIT_PER_HOUR, 3600),
      perIp: ephemeral.limiter('reset-ip', config.PASSWORD_RESET_LIMIT_PER_HOUR, 3600),
    },
  });
  const magicLinks = createMagicLinks({ users: repos.users, codes, mail, events, links, transaction, onBackgroundError });
  const selfService = createSelfService({
    users: repos.users, hasher, passwordPolicy, mail, events, links, payloads: repos.payloads, transaction,
    lockout: { threshold: config.LOCKOUT_THRESHOLD, durationSeconds: config.LOCKOUT_DURATION_SECONDS },
  });

  return {
    db,
    ephemeral,
    box,
    repos,
    keys,
    accounts,
    clients,
    resourceServers,
    userAdmin,
    mail,
    passwordPolicy,
    codes,
    verification,
    registration,
    registrationDefaults,
    passwordReset,
    magicLinks,
    selfService,
    async close() {
      await ephemeral.close();
      await db.destroy();
    },
  };
}

export type Services = Awaited<ReturnType<typeof createServices>>;

/**
 * Like Keycloak's bootstrap admin client: a confidential client with client_credentials and every
 * admin scope, made to match the configured credentials at each boot (so changing the secret in
 * the environment rotates it). The secret is never logged.
 */
async function ensureBootstrapAdminClient(services: Services, clientId: string, clientSecret: string) {
  await services.clients.register(
    {
      metadata: {
        client_id: clientId,
        client_secret: clientSecret,
        client_name: 'Bootstrap admin client',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: ADMIN_SCOPES.join(' '),
      },
      firstParty: true,
    },
    { upsert: true },
  );
}

/**
 * A running server. The provider's key set is fixed per instance, so when the stored keys change
 * (a rotation, a pending key coming into force) a new provider is built and swapped in; requests
 * already in flight finish on the old one.
 */
export async function startServer(config: AppConfig, logger: Logger, opts: { port?: number; host?: string } = {}) {
  const services = await createServices(config, logger);
  if (await services.keys.ensureKeys()) logger.info('generated signing and cookie keys');
  if (config.BOOTSTRAP_ADMIN_CLIENT_ID && config.BOOTSTRAP_ADMIN_CLIENT_SECRET) {
    await ensureBootstrapAdminClient(services, config.BOOTSTRAP_ADMIN_CLIENT_ID, config.BOOTSTRAP_ADMIN_CLIENT_SECRET);
    logger.info({ clientId: config.BOOTSTRAP_ADMIN_CLIENT_ID }, 'bootstrap admin client ensured');
  }
  await ensureAccountConsoleClient(services.clients, config.ISSUER);
  if (services.ephemeral.kind === 'memory') logger.warn('ephemeral store: memory (single instance only); set REDIS_URL to scale out');
  if (services.db.kind === 'pglite') logger.info({ dataDir: config.DATA_DIR }, 'database: embedded PGlite (single instance only)');

  const deps: AppDeps = {
    issuer: config.ISSUER,
    trustProxy: config.TRUST_PROXY,
    proxyHops: config.TRUST_PROXY_HOPS,
    loginRateLimitPerIp: config.LOGIN_RATE_LIMIT_PER_IP,
    tokens: {
      accessTokenTtl: config.ACCESS_TOKEN_TTL_SECONDS,
      idTokenTtl: config.ID_TOKEN_TTL_SECONDS,
      refreshTokenTtl: config.REFRESH_TOKEN_TTL_SECONDS,
      sessionTtl: config.SESSION_TTL_SECONDS,
      adminAudience: adminAudience(config.ISSUER),
    },
    adminAudience: adminAudience(config.ISSUER),
    userAdmin: services.userAdmin,
    idempotency: services.repos.idempotency,
    db: services.db,
    ephemeral: services.ephemeral,
    logger,
    box: services.box,
    accounts: services.accounts,
    resourceServers: services.resourceServers,
    payloads: services.repos.payloads,
    clients: services.clients,
    account: {
      registration: services.registration,
      registrationDefaults: services.registrationDefaults,
      verification: services.verification,
      passwordReset: services.passwordReset,
      magicLinks: services.magicLinks,
      selfService: services.selfService,
      captcha: createCaptcha({
        provider: config.CAPTCHA_PROVIDER,
        hmacKey: services.box.mac('captcha:altcha', 'hmac-key').toString('base64url'),
        ephemeral: services.ephemeral,
        ...(config.CAPTCHA_SITE_KEY ? { siteKey: config.CAPTCHA_SITE_KEY } : {}),
        ...(config.CAPTCHA_SECRET_KEY ? { secretKey: config.CAPTCHA_SECRET_KEY } : {}),
        ...(config.CAPTCHA_VERIFY_URL ? { verifyUrl: config.CAPTCHA_VERIFY_URL } : {}),
        maxNumber: config.CAPTCHA_ALTCHA_MAX_NUMBER,
      }),
      authRateLimitPerIp: config.AUTH_API_RATE_LIMIT_PER_IP,
      meRateLimitPerUser: config.ME_API_RATE_LIMIT_PER_USER,
    },
    internalOrigin: () => `http://127.0.0.1:${listeningPort}`,
  };
  let listeningPort = 0;

  let keySet = await services.keys.load();
  let provider: Provider = buildApp(deps, keySet);
  let handler = provider.callback();

  async function reloadKeys(): Promise<boolean> {
    const next = await services.keys.load();
    if (next.fingerprint === keySet.fingerprint) return false;
    const nextProvider = buildApp(deps, next);
    keySet = next;
    provider = nextProvider;
    handler = nextProvider.callback();
    logger.info({ keys: next.jwks.keys.map((k) => k.kid) }, 'key set changed: provider rebuilt');
    return true;
  }

  const keyTimer = setInterval(() => {
    reloadKeys().catch((err: unknown) => logger.warn({ err }, 'key reload failed'));
  }, config.KEY_RELOAD_INTERVAL_SECONDS * 1000);
  keyTimer.unref();

  const sweeper = createSweeper({
    db: services.db,
    payloads: services.repos.payloads,
    keys: services.keys,
    logger,
    others: [() => services.repos.idempotency.sweepExpired(), () => services.repos.outbox.sweepSent(30)],
  });
  sweeper.start(config.SWEEP_INTERVAL_SECONDS);

  const mailer = createMailer(
    { smtpUrl: config.SMTP_URL, from: config.MAIL_FROM, dataDir: config.DATA_DIR, logBodies: config.NODE_ENV !== 'production' },
    logger,
  );
  if (!config.SMTP_URL && config.NODE_ENV === 'production') logger.warn('SMTP_URL is not set: mail is written under DATA_DIR/outbox, not sent');
  logger.info({ to: mailer.description }, 'mail');
  const mailWorker = createMailWorker({
    repo: services.repos.outbox,
    box: services.box,
    render: createMailRenderer(),
    mailer,
    logger,
    settings: {
      pollIntervalMs: config.MAIL_POLL_INTERVAL_MS,
      retryBaseMs: config.MAIL_RETRY_BASE_MS,
      retryMaxMs: config.MAIL_RETRY_MAX_MS,
    },
  });
  mailWorker.start();

  const server = http.createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? config.PORT, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  listeningPort = port;
  logger.info({ port, issuer: config.ISSUER }, 'listening');

  let stopping: Promise<void> | undefined;
  return {
    port,
    services,
    get provider() {
      return provider;
    },
    reloadKeys,
    /** Stops accepting, lets in-flight requests finish, then closes the pools. */
    stop(): Promise<void> {
      stopping ??= (async () => {
        clearInterval(keyTimer);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
        await sweeper.stop();
        await mailWorker.stop();
        mailer.close();
        await services.close();
      })();
      return stopping;
    },
  };
}

export type RunningServer = Awaited<ReturnType<typeof startServer>>;
