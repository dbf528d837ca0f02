import path from 'node:path';
import { z } from 'zod';
import { projectRoot } from '../infra/paths.ts';
import { ACR_LEVELS, type AcrLevel } from '../domain/authn/sign-in-flow.ts';
import { MFA_POLICIES } from '../domain/authn/mfa-policy.ts';
import { parseCidrs } from '../infra/cidr.ts';

const bool = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])])
  .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

// A comma-separated list of IPv4/IPv6 CIDRs, checked entry by entry (the message names the bad one).
const cidrList = z.string().max(4096).superRefine((v, ctx) => {
  try {
    parseCidrs(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const postgresUrl = z
  .string()
  .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgres:// or postgresql:// URL');

const redisUrl = z.string().refine((v) => /^rediss?:\/\//.test(v), 'must be a redis:// or rediss:// URL');

const smtpUrl = z
  .string()
  .refine((v) => /^smtps?:\/\/[^/]/.test(v) && URL.canParse(v) && new URL(v).hostname !== '', 'must be an smtp:// or smtps:// URL with a host');

const httpUrl = z
  .string()
  .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol) && !new URL(v).search && !new URL(v).hash, 'must be an http:// or https:// URL without a query or fragment');

// z.url() takes "localhost:3000" as a URL of scheme "localhost:"; the provider would then fail
// deep in its constructor. The issuer is the public origin (and optional path) clients see.
const issuerUrl = z
  .string()
  .refine(
    (v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol) && new URL(v).hostname !== '',
    { error: (issue) => `must be an http:// or https:// URL with a host, such as https://id.example.com (got ${JSON.stringify(String(issue.input).slice(0, 100))})` },
  );

// One mailbox or "Name <mailbox>"; no line breaks (it becomes a header).
const mailFrom = z
  .string()
  .max(320)
  .refine((v) => !/[\r\n]/.test(v) && /^(?:[^<>@]*<[^<>@\s]+@[^<>@\s]+>|[^<>@\s]+@[^<>@\s]+)$/.test(v.trim()), 'must be an address or "Name <address>"');

// Assurance levels offered, weakest first, each once: a subset of pwd mfa phr in that order.
const acrValues = z
  .string()
  .transform((v) => v.split(/\s+/).filter(Boolean))
  .refine(
    (values) => values.length > 0
      && values.every((v, i) => ACR_LEVELS.includes(v as AcrLevel) && (i === 0 || ACR_LEVELS.indexOf(values[i - 1] as AcrLevel) < ACR_LEVELS.indexOf(v as AcrLevel))),
    `must be some of ${ACR_LEVELS.join(' ')}, space-separated, in that order, each once`,
  )
  .transform((values) => values as AcrLevel[]);

/**
 * The single source of truth for every setting. Keys are the environment variable names, so an
 * error message names exactly what the operator has to fix.
 */
export const configSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    PORT: int(0, 65535).default(3000),
    ISSUER: issuerUrl.optional(),
    DATABASE_URL: postgresUrl.optional(),
    REDIS_URL: redisUrl.optional(),
    REDIS_KEY_PREFIX: z.string().max(64).default('idp:'),
    MEMORY_STORE_MAX_ENTRIES: int(10, 10_000_000).default(100_000),
    // The project's data/, wherever the command runs from (npx idp in a subdirectory, node from
    // elsewhere): a default relative to the cwd made a second, empty store there. A DATA_DIR that
    // is set is a path like any other, relative to the cwd.
    DATA_DIR: z.string().min(1).default(() => path.join(projectRoot(), 'data')),
    KEY_ENCRYPTION_KEY: z
      .string()
      .refine((v) => Buffer.from(v, 'base64url').length >= 32, 'must be at least 32 bytes, base64url encoded')
      .optional(),
    BOOTSTRAP_ADMIN_CLIENT_ID: z.string().min(1).max(128).optional(),
    BOOTSTRAP_ADMIN_CLIENT_SECRET: z.string().min(32, 'must be at least 32 characters').max(512).optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    TRUST_PROXY: bool.default(false),
    TRUST_PROXY_HOPS: int(1, 10).default(1),
    ARGON2_MEMORY_KIB: int(1024, 4 * 1024 * 1024).default(19456),
    ARGON2_ITERATIONS: int(1, 20).default(2),
    ARGON2_PARALLELISM: int(1, 16).default(1),
    LOGIN_RATE_LIMIT_PER_IP: int(1, 100000).default(5),
    LOCKOUT_THRESHOLD: int(1, 1000).default(10),
    LOCKOUT_DURATION_SECONDS: int(1, 86400 * 30).default(900),
    PASSWORD_MIN_LENGTH: int(8, 1024).default(8),
    PASSWORD_MIN_SCORE: int(0, 4).default(3),
    HIBP_RANGE_URL: httpUrl.optional(),
    MFA_POLICY: z.enum(MFA_POLICIES).default('optional'),
    ACR_VALUES: acrValues.prefault(ACR_LEVELS.join(' ')),
    REGISTRATION_ENABLED: bool.default(true),
    REGISTRATION_PASSWORD: z.enum(['required', 'optional']).default('required'),
    REGISTRATION_WELCOME_MAIL: bool.default(true),
    REGISTRATION_REQUIRE_EMAIL_VERIFICATION: bool.default(true),
    CAPTCHA_PROVIDER: z.enum(['altcha', 'turnstile', 'hcaptcha', 'none']).default('altcha'),
    CAPTCHA_SITE_KEY: z.string().min(1).max(256).optional(),
    CAPTCHA_SECRET_KEY: z.string().min(1).max(256).optional(),
    CAPTCHA_VERIFY_URL: httpUrl.optional(),
    CAPTCHA_ALTCHA_MAX_NUMBER: int(10, 10_000_000).default(100_000),
    PASSWORD_RESET_LIMIT_PER_HOUR: int(1, 10_000).default(3),
    AUTH_API_RATE_LIMIT_PER_IP: int(1, 100_000).default(30),
    ME_API_RATE_LIMIT_PER_USER: int(1, 100_000).default(300),
    USERS_CREATE_RATE_LIMIT_PER_MINUTE: int(1, 100_000).default(60),
    ACCESS_TOKEN_TTL_SECONDS: int(60, 86400).default(3600),
    ID_TOKEN_TTL_SECONDS: int(60, 86400).default(3600),
    REFRESH_TOKEN_TTL_SECONDS: int(300, 86400 * 365).default(14 * 86400),
    SESSION_TTL_SECONDS: int(300, 86400 * 365).default(14 * 86400),
    KEY_RELOAD_INTERVAL_SECONDS: int(1, 3600).default(10),
    KEY_PROPAGATION_SECONDS: int(0, 86400).default(60),
    SWEEP_INTERVAL_SECONDS: int(5, 86400).default(300),
    AUDIT_RETENTION_DAYS: int(0, 36_500).default(365),
    DB_POOL_MAX: int(1, 200).default(10),
    DB_STATEMENT_TIMEOUT_MS: int(100, 600_000).default(5000),
    DB_ACQUIRE_TIMEOUT_MS: int(100, 600_000).default(5000),
    REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000).default(2000),
    SMTP_URL: smtpUrl.optional(),
    MAIL_FROM: mailFrom.default('idp <no-reply@localhost>'),
    MAIL_POLL_INTERVAL_MS: int(10, 60_000).default(1000),
    MAIL_RETRY_BASE_MS: int(10, 3_600_000).default(5000),
    MAIL_RETRY_MAX_MS: int(10, 86_400_000).default(900_000),
    WEBHOOK_POLL_INTERVAL_MS: int(10, 60_000).default(1000),
    WEBHOOK_RETRY_BASE_MS: int(10, 3_600_000).default(5000),
    WEBHOOK_RETRY_MAX_MS: int(10, 86_400_000).default(3_600_000),
    WEBHOOK_RETRY_WINDOW_SECONDS: int(1, 30 * 86400).default(3 * 86400),
    WEBHOOK_TIMEOUT_MS: int(100, 60_000).default(10_000),
    WEBHOOK_ALLOW_PRIVATE_NETWORKS: bool.default(false),
    METRICS_PORT: int(0, 65535).optional(),
    METRICS_HOST: z.string().min(1).max(255).default('127.0.0.1'),
    // The internal listener (src/http/internal): off unless a port is given.
    INTERNAL_PORT: int(0, 65535).optional(),
    INTERNAL_HOST: z.string().min(1).max(255).default('127.0.0.1'),
    INTERNAL_ALLOWED_CIDRS: cidrList.default('127.0.0.0/8,::1/128'),
    // OpenTelemetry tracing (src/infra/tracing.ts): the standard OTEL_* variables; off without an endpoint.
    OTEL_EXPORTER_OTLP_ENDPOINT: httpUrl.optional(),
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: httpUrl.optional(),
    OTEL_EXPORTER_OTLP_HEADERS: z.string().max(8192).optional(),
    OTEL_EXPORTER_OTLP_PROTOCOL: z.literal('http/json', { error: 'only http/json is supported (spans are posted as OTLP/HTTP JSON); unset it or set http/json' }).optional(),
    OTEL_SERVICE_NAME: z.string().min(1).max(255).optional(),
    OTEL_RESOURCE_ATTRIBUTES: z.string().max(8192).optional(),
    OTEL_TRACES_SAMPLER: z
      .enum(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'])
      .default('parentbased_always_on'),
    OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).optional(),
    OTEL_SDK_DISABLED: bool.default(false),
    SMS_PROVIDER: z.enum(['off', 'log', 'webhook']).default('off'),
    SMS_WEBHOOK_URL: httpUrl.optional(),
    SMS_WEBHOOK_TOKEN: z.string().min(1).max(1024).refine((v) => !/[\s]/.test(v), 'must not contain spaces or line breaks').optional(),
    SMS_WEBHOOK_TIMEOUT_MS: int(100, 60_000).default(5000),
    SAML_CLOCK_SKEW_SECONDS: int(0, 600).default(60),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.NODE_ENV === 'production' && !cfg.ISSUER) {
      ctx.addIssue({ code: 'custom', path: ['ISSUER'], message: 'is required in production: the public https:// URL of this provider' });
    }
    if (cfg.ISSUER && URL.canParse(cfg.ISSUER)) {
      const url = new URL(cfg.ISSUER);
      if (url.search || url.hash) {
        ctx.addIssue({ code: 'custom', path: ['ISSUER'], message: 'must not contain a query or fragment' });
      }
      if (cfg.NODE_ENV === 'production' && url.protocol !== 'https:') {
        ctx.addIssue({ code: 'custom', path: ['ISSUER'], message: `must be an https:// URL in production (got ${url.protocol}//)` });
      }
    }
    if (cfg.NODE_ENV === 'production' && cfg.DATABASE_URL && !cfg.KEY_ENCRYPTION_KEY) {
      ctx.addIssue({
        code: 'custom',
        path: ['KEY_ENCRYPTION_KEY'],
        message: 'is required in production with DATABASE_URL (every instance must share it)',
      });
    }
    if (cfg.MAIL_RETRY_MAX_MS < cfg.MAIL_RETRY_BASE_MS) {
      ctx.addIssue({ code: 'custom', path: ['MAIL_RETRY_MAX_MS'], message: 'must not be less than MAIL_RETRY_BASE_MS' });
    }
    if (cfg.WEBHOOK_RETRY_MAX_MS < cfg.WEBHOOK_RETRY_BASE_MS) {
      ctx.addIssue({ code: 'custom', path: ['WEBHOOK_RETRY_MAX_MS'], message: 'must not be less than WEBHOOK_RETRY_BASE_MS' });
    }
    if ((cfg.CAPTCHA_PROVIDER === 'turnstile' || cfg.CAPTCHA_PROVIDER === 'hcaptcha') && !(cfg.CAPTCHA_SITE_KEY && cfg.CAPTCHA_SECRET_KEY)) {
      ctx.addIssue({ code: 'custom', path: ['CAPTCHA_SECRET_KEY'], message: `CAPTCHA_SITE_KEY and CAPTCHA_SECRET_KEY are required with CAPTCHA_PROVIDER=${cfg.CAPTCHA_PROVIDER}` });
    }
    if (cfg.SMS_PROVIDER === 'webhook' && !cfg.SMS_WEBHOOK_URL) {
      ctx.addIssue({ code: 'custom', path: ['SMS_WEBHOOK_URL'], message: 'is required with SMS_PROVIDER=webhook' });
    }
    if (cfg.SMS_PROVIDER === 'log' && cfg.NODE_ENV === 'production') {
      ctx.addIssue({ code: 'custom', path: ['SMS_PROVIDER'], message: 'log writes sign-in codes to the log and is for development only: use webhook (or off) in production' });
    }
    if (cfg.INTERNAL_PORT && (cfg.INTERNAL_PORT === cfg.PORT || cfg.INTERNAL_PORT === cfg.METRICS_PORT)) {
      ctx.addIssue({ code: 'custom', path: ['INTERNAL_PORT'], message: 'must differ from PORT and METRICS_PORT (the internal endpoints get a listener of their own)' });
    }
    if (Boolean(cfg.BOOTSTRAP_ADMIN_CLIENT_ID) !== Boolean(cfg.BOOTSTRAP_ADMIN_CLIENT_SECRET)) {
      ctx.addIssue({
        code: 'custom',
        path: ['BOOTSTRAP_ADMIN_CLIENT_SECRET'],
        message: 'BOOTSTRAP_ADMIN_CLIENT_ID and BOOTSTRAP_ADMIN_CLIENT_SECRET must be set together',
      });
    }
  });

export type RawConfig = z.output<typeof configSchema>;

export interface AppConfig extends Omit<RawConfig, 'ISSUER'> {
  ISSUER: string;
}
