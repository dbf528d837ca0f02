import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildApp, type AppDeps } from './app.ts';
import type { AppConfig } from './config/schema.ts';
import { ADMIN_SCOPES, adminAudience } from './domain/clients/admin-scopes.ts';
import type { Logger } from './infra/logger.ts';
import { StoreUnavailable } from './infra/store-outage.ts';
import { StartupError } from './domain/errors.ts';
import type { Provider } from './oidc/provider.ts';
import { createSweeper } from './oidc/sweeper.ts';
import { vacuumWhereDue } from './infra/pglite-maintenance.ts';
import { createMailRenderer } from './domain/mail/mail.ts';
import { createMailWorker } from './domain/mail/mail-worker.ts';
import { createWebhookWorker } from './domain/webhooks/worker.ts';
import { logoutTokenFor } from './oidc/backchannel-logout.ts';
import { createMailer } from './infra/mailer.ts';
import { createCaptcha } from './infra/captcha.ts';
import { metricsListener } from './http/metrics.ts';
import { internalServer } from './http/internal/server.ts';
import { cidrMatcher, parseCidrs } from './infra/cidr.ts';
import { ensureAccountConsoleClient } from './http/account/client.ts';
import { nextSteps } from './next-steps.ts';

import { createServices, type Services } from './services.ts';
import { MFA_DEFAULTS } from './domain/authn/mfa.ts';

/**
 * Like Keycloak's bootstrap admin client: a confidential client with client_credentials and every
 * admin scope, made to match the configured credentials at each boot (so changing the secret in
 * the environment rotates it). The secret is never logged.
 */
async function ensureBootstrapAdminClient(services: Services, clientId: string, clientSecret: string) {
  await services.clients.ensureBuiltIn(
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
    'the bootstrap admin client, set by BOOTSTRAP_ADMIN_CLIENT_ID and BOOTSTRAP_ADMIN_CLIENT_SECRET',
  );
}

/**
 * A running server. The provider's key set is fixed per instance, so when the stored keys change
 * (a rotation, a pending key coming into force) a new provider is built and swapped in; requests
 * already in flight finish on the old one.
 */
export async function startServer(
  config: AppConfig,
  logger: Logger,
  opts: {
    port?: number;
    host?: string;
    /**
     * An HTTP server already listening, to serve on instead of binding `port` (tests bind port 0
     * first so the issuer can name the real port without a window in which another process takes it).
     */
    listening?: http.Server;
  } = {},
) {
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
    userMerge: services.userMerge,
    idempotency: services.repos.idempotency,
    db: services.db,
    ephemeral: services.ephemeral,
    logger,
    box: services.box,
    accounts: services.accounts,
    resourceServers: services.resourceServers,
    federation: services.federation,
    payloads: services.repos.payloads,
    clients: services.clients,
    account: {
      registration: services.registration,
      registrationDefaults: services.registrationDefaults,
      verification: services.verification,
      addressProof: services.addressProof,
      passwordReset: services.passwordReset,
      magicLinks: services.magicLinks,
      selfService: services.selfService,
      mfa: services.mfa,
      codeFactors: services.codeFactors,
      webauthn: services.webauthn,
      mfaPolicy: config.MFA_POLICY,
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
    acrValues: config.ACR_VALUES,
    development: config.NODE_ENV !== 'production',
    metrics: services.metrics,
    webhooks: services.webhooks,
    backchannelLogouts: services.backchannelLogouts,
    audit: services.audit,
    eventStream: services.eventStream,
    tenants: services.tenants,
    apiKeys: services.apiKeys,
    access: services.access,
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
    // During a database outage the breaker's log lines say enough; this retries on its own.
    reloadKeys().catch((err: unknown) => logger[err instanceof StoreUnavailable ? 'debug' : 'warn']({ err }, 'key reload failed'));
  }, config.KEY_RELOAD_INTERVAL_SECONDS * 1000);
  keyTimer.unref();

  const sweeper = createSweeper({
    db: services.db,
    payloads: services.repos.payloads,
    keys: services.keys,
    logger,
    others: [
      () => services.repos.idempotency.sweepExpired(),
      () => services.repos.outbox.sweepSent(30),
      () => services.repos.webhooks.sweepFinished(30),
      // TOTP enrollments never confirmed: dead after their lifetime, their sealed secret goes too.
      () => services.repos.mfaFactors.sweepUnconfirmed(MFA_DEFAULTS.enrollmentTtlSeconds),
      // Events older than AUDIT_RETENTION_DAYS.
      () => services.auditRetention.sweep(),
    ],
    // PGlite has no autovacuum (infra/pglite-maintenance.ts); PostgreSQL's own does this.
    afterSweep: services.db.kind === 'pglite' ? () => vacuumWhereDue(services.db) : undefined,
  });
  sweeper.start(config.SWEEP_INTERVAL_SECONDS);

  const mailer = createMailer(
    { smtpUrl: config.SMTP_URL, from: config.MAIL_FROM, dataDir: config.DATA_DIR, logBodies: config.NODE_ENV !== 'production' },
    logger,
  );
  if (!config.SMTP_URL && config.NODE_ENV === 'production') logger.warn('SMTP_URL is not set: mail is written under DATA_DIR/outbox, not sent');
  logger.info({ to: mailer.description }, 'mail');
  logger.info({ provider: services.sms.description }, 'sms');
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
  // Webhook deliveries: off the request path, from the queue the events fill.
  const webhookWorker = createWebhookWorker({
    repo: services.repos.webhooks,
    webhooks: services.webhooks,
    events: services.events,
    transaction: (work) => services.db.transaction(work),
    // Logout tokens are signed by the provider in force when they are sent.
    logoutToken: (notice) => logoutTokenFor(provider, notice),
    logger,
    settings: {
      pollIntervalMs: config.WEBHOOK_POLL_INTERVAL_MS,
      retryBaseMs: config.WEBHOOK_RETRY_BASE_MS,
      retryMaxMs: config.WEBHOOK_RETRY_MAX_MS,
      timeoutMs: config.WEBHOOK_TIMEOUT_MS,
      allowPrivateNetworks: config.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
    },
  });
  webhookWorker.start();

  let metricsServer: http.Server | undefined;
  let metricsPort: number | undefined;
  let internal: http.Server | undefined;
  let internalPort: number | undefined;
  /** Everything but the listeners: timers, workers and the stores' pools. */
  async function release() {
    clearInterval(keyTimer);
    if (metricsServer?.listening) {
      // A scraper's kept-alive connection would hold close() open; a scrape is safe to cut short.
      const closed = new Promise((resolve) => metricsServer!.close(resolve));
      metricsServer.closeAllConnections();
      await closed;
    }
    // A long retention sweep stops after its current batch.
    services.auditRetention.stop();
    await sweeper.stop();
    await mailWorker.stop();
    await webhookWorker.stop();
    mailer.close();
    await services.close();
  }

  const server = opts.listening ?? http.createServer();
  server.on('request', (req, res) => handler(req, res));
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;
  if (!server.listening) {
    const port = opts.port ?? config.PORT;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, opts.host, () => resolve());
      });
    } catch (err) {
      await release();
      throw new StartupError(`PORT: cannot listen on ${port}: ${listenFailure(err)}`);
    }
  }
  const { port } = server.address() as AddressInfo;
  listeningPort = port;
  logger.info({ port, issuer: config.ISSUER }, 'listening');
  if (config.NODE_ENV === 'development') {
    const steps = nextSteps({ issuer: config.ISSUER, adminClientId: config.BOOTSTRAP_ADMIN_CLIENT_ID, smtp: Boolean(config.SMTP_URL), dataDir: config.DATA_DIR });
    for (const step of steps) logger.info(step);
  }

  /**
   * A listener beside the public one (metrics, internal endpoints) on its own port. If it cannot
   * listen, the boot stops: whatever already listens is closed and the data directory released.
   */
  const listenBeside = async (side: http.Server, setting: string, port: number, host: string): Promise<number> => {
    try {
      await new Promise<void>((resolve, reject) => {
        side.once('error', reject);
        side.listen(port, host, () => resolve());
      });
    } catch (err) {
      for (const open of [metricsServer, server]) {
        if (open?.listening) await new Promise((resolve) => open.close(resolve));
      }
      await release();
      throw new StartupError(`${setting}: cannot listen on ${host}:${port}: ${listenFailure(err)}`);
    }
    return (side.address() as AddressInfo).port;
  };

  // Prometheus metrics only when asked for, on a listener of their own (never the public port).
  if (config.METRICS_PORT !== undefined) {
    services.metrics.serve(services.metricSources, logger);
    metricsServer = http.createServer(metricsListener(services.metrics, logger));
    metricsPort = await listenBeside(metricsServer, 'METRICS_PORT', config.METRICS_PORT, config.METRICS_HOST);
    logger.info({ port: metricsPort, host: config.METRICS_HOST }, 'metrics listening');
  }

  // The internal endpoints (/internal/identity/...) only when asked for, on a listener of their own.
  if (config.INTERNAL_PORT !== undefined) {
    internal = internalServer({
      directory: services.identityDirectory,
      provider: () => provider,
      allowed: cidrMatcher(parseCidrs(config.INTERNAL_ALLOWED_CIDRS)),
      logger,
    });
    internalPort = await listenBeside(internal, 'INTERNAL_PORT', config.INTERNAL_PORT, config.INTERNAL_HOST);
    logger.info({ port: internalPort, host: config.INTERNAL_HOST, allowed: config.INTERNAL_ALLOWED_CIDRS }, 'internal endpoints listening');
  }

  let stopping: Promise<void> | undefined;
  return {
    port,
    /** The metrics listener's port, when METRICS_PORT is set. */
    metricsPort,
    /** The internal listener's port, when INTERNAL_PORT is set. */
    internalPort,
    services,
    get provider() {
      return provider;
    },
    reloadKeys,
    /** Stops accepting, lets in-flight requests finish, then closes the pools. */
    stop(): Promise<void> {
      stopping ??= (async () => {
        clearInterval(keyTimer);
        // Live event streams never end on their own: end them, or close() would wait for them.
        services.eventStream.close();
        // Both listeners stop accepting at once; each lets its in-flight requests finish.
        await Promise.all([server, internal].filter((s): s is http.Server => s?.listening === true).map((s) => new Promise<void>((resolve) => {
          s.close(() => resolve());
          s.closeIdleConnections();
        })));
        await release();
      })();
      return stopping;
    },
  };
}

/** Why a port could not be bound, in the operator's words. */
function listenFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return 'the port is already in use (another instance or program listens on it)';
  if (code === 'EACCES') return 'permission denied (ports below 1024 need privileges: use a higher PORT behind the proxy)';
  return (err as Error).message;
}

export type RunningServer = Awaited<ReturnType<typeof startServer>>;
