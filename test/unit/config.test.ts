import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load.ts';

// The boot checks that depend on more than one setting (README: "Every setting is validated at boot;
// a wrong one stops the boot with a message naming it"), through loadConfig as main.ts calls it.
// The working directory is an empty temporary one, so no config/<NODE_ENV>.json is read.

const tmp = mkdtempSync(path.join(os.tmpdir(), 'idp-config-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const KEK = Buffer.alloc(32, 7).toString('base64url');
const PG = 'postgres://idp@db.internal:5432/idp';
const HTTPS = 'https://idp.example.test';

const load = (env: Record<string, string>) => loadConfig(env, tmp);

/** loadConfig must refuse `env` with exactly `message` (a ConfigError). */
function refuses(env: Record<string, string>, message: string) {
  assert.throws(
    () => load(env),
    (err: Error) => {
      assert.ok(err instanceof ConfigError, `a ConfigError, got ${err.name}`);
      assert.equal(err.message, message);
      return true;
    },
    JSON.stringify(env),
  );
}

describe('production boot checks', () => {
  const prod = (env: Record<string, string>) => ({ NODE_ENV: 'production', ...env });

  it('an ISSUER is required, and it must be https', () => {
    refuses(prod({}), 'invalid configuration: ISSUER: is required in production: the public https:// URL of this provider');
    refuses(prod({ ISSUER: 'http://idp.example.test' }), 'invalid configuration: ISSUER: must be an https:// URL in production (got http://)');
    // Outside production a plain http issuer is fine (local development, tests).
    assert.equal(load({ NODE_ENV: 'development', ISSUER: 'http://idp.example.test' }).ISSUER, 'http://idp.example.test');
    assert.equal(load(prod({ ISSUER: `${HTTPS}/` })).ISSUER, HTTPS);
  });

  it('KEY_ENCRYPTION_KEY is required with DATABASE_URL (every instance must share it), not on the embedded store', () => {
    refuses(
      prod({ ISSUER: HTTPS, DATABASE_URL: PG }),
      'invalid configuration: KEY_ENCRYPTION_KEY: is required in production with DATABASE_URL (every instance must share it)',
    );
    const shared = load(prod({ ISSUER: HTTPS, DATABASE_URL: PG, KEY_ENCRYPTION_KEY: KEK }));
    assert.equal(shared.KEY_ENCRYPTION_KEY, KEK);
    assert.equal(shared.DATABASE_URL, PG);
    // One machine on the embedded store: the key generated into DATA_DIR is enough.
    assert.equal(load(prod({ ISSUER: HTTPS })).KEY_ENCRYPTION_KEY, undefined);
    // Not production: PostgreSQL without a given key boots (the generated file serves one machine).
    assert.equal(load({ NODE_ENV: 'development', DATABASE_URL: PG }).DATABASE_URL, PG);
  });

  it('the log SMS provider (codes in the log) is refused in production with one line; the webhook needs its URL', () => {
    refuses(
      prod({ ISSUER: HTTPS, SMS_PROVIDER: 'log' }),
      'invalid configuration: SMS_PROVIDER: log writes sign-in codes to the log and is for development only: use webhook (or off) in production',
    );
    assert.equal(load({ NODE_ENV: 'development', SMS_PROVIDER: 'log' }).SMS_PROVIDER, 'log');
    refuses(prod({ ISSUER: HTTPS, SMS_PROVIDER: 'webhook' }), 'invalid configuration: SMS_WEBHOOK_URL: is required with SMS_PROVIDER=webhook');
    assert.equal(load(prod({ ISSUER: HTTPS, SMS_PROVIDER: 'webhook', SMS_WEBHOOK_URL: 'https://sms.example.test/send' })).SMS_PROVIDER, 'webhook');
    assert.equal(load({}).SMS_PROVIDER, 'off', 'off by default');
  });

  it('a KEY_ENCRYPTION_KEY shorter than 32 bytes is refused by name', () => {
    refuses(
      prod({ ISSUER: HTTPS, DATABASE_URL: PG, KEY_ENCRYPTION_KEY: Buffer.alloc(31, 7).toString('base64url') }),
      'invalid configuration: KEY_ENCRYPTION_KEY: must be at least 32 bytes, base64url encoded',
    );
  });

  it('every failed check is reported at once, one line each', () => {
    refuses(
      prod({ ISSUER: 'http://idp.example.test', DATABASE_URL: PG }),
      [
        'invalid configuration:',
        '  ISSUER: must be an https:// URL in production (got http://)',
        '  KEY_ENCRYPTION_KEY: is required in production with DATABASE_URL (every instance must share it)',
      ].join('\n'),
    );
  });

  it('settings from the config file are checked the same way', () => {
    const file = path.join(tmp, 'production.json');
    writeFileSync(file, JSON.stringify({ ISSUER: 'http://idp.example.test', DATABASE_URL: PG, KEY_ENCRYPTION_KEY: KEK }));
    refuses(prod({ CONFIG_FILE: file }), 'invalid configuration: ISSUER: must be an https:// URL in production (got http://)');
    // The environment wins over the file.
    assert.equal(load(prod({ CONFIG_FILE: file, ISSUER: HTTPS })).ISSUER, HTTPS);
  });
});

describe('other checks across settings', () => {
  it('MAIL_RETRY_MAX_MS may not be below MAIL_RETRY_BASE_MS', () => {
    refuses({ NODE_ENV: 'test', MAIL_RETRY_BASE_MS: '5000', MAIL_RETRY_MAX_MS: '4999' }, 'invalid configuration: MAIL_RETRY_MAX_MS: must not be less than MAIL_RETRY_BASE_MS');
    assert.equal(load({ NODE_ENV: 'test', MAIL_RETRY_BASE_MS: '5000', MAIL_RETRY_MAX_MS: '5000' }).MAIL_RETRY_MAX_MS, 5000);
  });

  it('Turnstile and hCaptcha need both keys', () => {
    for (const provider of ['turnstile', 'hcaptcha']) {
      const message = `invalid configuration: CAPTCHA_SECRET_KEY: CAPTCHA_SITE_KEY and CAPTCHA_SECRET_KEY are required with CAPTCHA_PROVIDER=${provider}`;
      refuses({ NODE_ENV: 'test', CAPTCHA_PROVIDER: provider }, message);
      refuses({ NODE_ENV: 'test', CAPTCHA_PROVIDER: provider, CAPTCHA_SITE_KEY: 'site' }, message);
      assert.equal(load({ NODE_ENV: 'test', CAPTCHA_PROVIDER: provider, CAPTCHA_SITE_KEY: 'site', CAPTCHA_SECRET_KEY: 'secret' }).CAPTCHA_PROVIDER, provider);
    }
  });

  it('the bootstrap admin client id and secret go together', () => {
    const message = 'invalid configuration: BOOTSTRAP_ADMIN_CLIENT_SECRET: BOOTSTRAP_ADMIN_CLIENT_ID and BOOTSTRAP_ADMIN_CLIENT_SECRET must be set together';
    refuses({ NODE_ENV: 'test', BOOTSTRAP_ADMIN_CLIENT_ID: 'admin' }, message);
    refuses({ NODE_ENV: 'test', BOOTSTRAP_ADMIN_CLIENT_SECRET: 's'.repeat(32) }, message);
    refuses(
      { NODE_ENV: 'test', BOOTSTRAP_ADMIN_CLIENT_ID: 'admin', BOOTSTRAP_ADMIN_CLIENT_SECRET: 's'.repeat(31) },
      'invalid configuration: BOOTSTRAP_ADMIN_CLIENT_SECRET: must be at least 32 characters',
    );
  });
});

describe('each setting is checked on its own', () => {
  const load = (env: Record<string, string>) => loadConfig({ NODE_ENV: 'test', ...env }, tmp);

  it('rejects a bad setting with a ConfigError naming it', () => {
    for (const [key, value] of [
      ['PORT', 'abc'],
      ['PORT', '70000'],
      ['LOCKOUT_THRESHOLD', '-1'],
      ['LOCKOUT_DURATION_SECONDS', '1.5'],
      ['LOGIN_RATE_LIMIT_PER_IP', '0'],
      ['TRUST_PROXY', 'maybe'],
      ['ISSUER', 'ftp://idp.example.test/?x=1'],
      ['DATABASE_URL', 'mysql://localhost/db'],
    ] as const) {
      assert.throws(
        () => load({ [key]: value }),
        (err: Error) => err instanceof ConfigError && new RegExp(`\\b${key}\\b`).test(err.message),
        `${key}=${value} should be refused naming ${key}`,
      );
    }
  });

  it('ACR_VALUES: some of pwd mfa phr, weakest first, each once; the default is all three', () => {
    assert.deepEqual(load({}).ACR_VALUES, ['pwd', 'mfa', 'phr']);
    assert.deepEqual(load({ ACR_VALUES: 'pwd  mfa' }).ACR_VALUES, ['pwd', 'mfa']);
    assert.deepEqual(load({ ACR_VALUES: 'mfa' }).ACR_VALUES, ['mfa']);
    for (const value of [' ', 'mfa pwd', 'pwd pwd', 'pwd otp', 'phr mfa']) {
      assert.throws(
        () => load({ ACR_VALUES: value }),
        (err: Error) => err instanceof ConfigError && err.message === 'invalid configuration: ACR_VALUES: must be some of pwd mfa phr, space-separated, in that order, each once',
        `ACR_VALUES=${JSON.stringify(value)} should be refused`,
      );
    }
  });

  it('names ISSUER when it is not a URL at all', () => {
    assert.throws(
      () => load({ ISSUER: 'not a url' }),
      (err: Error) => err instanceof ConfigError && /\bISSUER\b/.test(err.message),
    );
  });

  it('reports every bad setting at once, and accepts good ones', () => {
    assert.throws(
      () => load({ PORT: 'abc', LOCKOUT_THRESHOLD: '-1' }),
      (err: Error) => err instanceof ConfigError && /\bPORT\b/.test(err.message) && /\bLOCKOUT_THRESHOLD\b/.test(err.message),
    );
    const cfg = load({ PORT: '8080', LOCKOUT_THRESHOLD: '3', TRUST_PROXY: 'true' });
    assert.equal(cfg.PORT, 8080);
    assert.equal(cfg.LOCKOUT_THRESHOLD, 3);
    assert.equal(cfg.TRUST_PROXY, true);
    assert.equal(cfg.ISSUER, 'http://localhost:8080');
  });

  it('refuses to boot in production without an https ISSUER, with a one-line message', () => {
    const prod = (env: Record<string, string>) => loadConfig({ ...env, NODE_ENV: 'production' }, tmp);
    for (const [env, pattern] of [
      [{ ISSUER: 'http://idp.example.test' }, /^invalid configuration: ISSUER: must be an https:\/\/ URL in production \(got http:\/\/\)$/],
      [{}, /^invalid configuration: ISSUER: is required in production: the public https:\/\/ URL of this provider$/],
    ] as const) {
      assert.throws(() => prod(env), (err: Error) => err instanceof ConfigError && pattern.test(err.message), JSON.stringify(env));
    }
    assert.equal(prod({ ISSUER: 'https://idp.example.test/' }).ISSUER, 'https://idp.example.test');
  });

  it('names a bad setting that comes from the config file', () => {
    const file = path.join(tmp, 'bad.json');
    writeFileSync(file, JSON.stringify({ LOCKOUT_THRESHOLD: 0 }));
    assert.throws(
      () => load({ CONFIG_FILE: file }),
      (err: Error) => err instanceof ConfigError && /\bLOCKOUT_THRESHOLD\b/.test(err.message),
    );
    // The environment wins over the file.
    assert.equal(load({ CONFIG_FILE: file, LOCKOUT_THRESHOLD: '4' }).LOCKOUT_THRESHOLD, 4);
  });
});
