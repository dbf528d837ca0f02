import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { describeSql } from '../../src/infra/tracing-sdk.ts';
import { tracingSettings } from '../../src/infra/tracing.ts';

const settingsFor = (env: Record<string, string>) => tracingSettings(loadConfig({ NODE_ENV: 'test', ...env }, '/nonexistent'));

describe('tracing settings (the standard OTEL_* variables)', () => {
  it('is off without an endpoint, or when the SDK is disabled', () => {
    assert.equal(settingsFor({}), undefined);
    assert.equal(settingsFor({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }), undefined);
    assert.equal(settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }), undefined);
  });

  it('the general endpoint gets /v1/traces; the traces endpoint is used as is and wins', () => {
    assert.equal(settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' })?.tracesUrl, 'http://c:4318/v1/traces');
    assert.equal(settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/otlp' })?.tracesUrl, 'http://c:4318/otlp/v1/traces');
    assert.equal(settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://t.example/ingest' })?.tracesUrl, 'https://t.example/ingest');
  });

  it('service name: OTEL_SERVICE_NAME, else service.name in the resource attributes, else idp', () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' };
    assert.equal(settingsFor(base)?.serviceName, 'idp');
    assert.equal(settingsFor({ ...base, OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' })?.serviceName, 'from-attrs');
    assert.equal(settingsFor({ ...base, OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs', OTEL_SERVICE_NAME: 'named' })?.serviceName, 'named');
    assert.deepEqual(settingsFor({ ...base, OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc, x-tenant = t1' })?.headers, { authorization: 'Bearer abc', 'x-tenant': 't1' });
  });

  it('sampler: parentbased_always_on by default; a ratio between 0 and 1; a bad value names the setting', () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' };
    assert.equal(settingsFor(base)?.sampler, 'parentbased_always_on');
    assert.deepEqual(
      [settingsFor({ ...base, OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' })].map((s) => [s?.sampler, s?.samplerRatio]),
      [['parentbased_traceidratio', 0.25]],
    );
    assert.throws(() => settingsFor({ ...base, OTEL_TRACES_SAMPLER: 'sometimes' }), /OTEL_TRACES_SAMPLER/);
    assert.throws(() => settingsFor({ ...base, OTEL_TRACES_SAMPLER_ARG: '2' }), /OTEL_TRACES_SAMPLER_ARG/);
    assert.throws(() => settingsFor({ ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), /OTEL_EXPORTER_OTLP_PROTOCOL: only http\/json/);
    assert.throws(() => settingsFor({ OTEL_EXPORTER_OTLP_ENDPOINT: 'c:4318' }), /OTEL_EXPORTER_OTLP_ENDPOINT/);
  });
});

describe('database span names', () => {
  it('operation and table only, never a value', () => {
    assert.deepEqual(describeSql('select "id", "email" from "users" where "email" = $1 limit $2'), { operation: 'SELECT', table: 'users' });
    assert.deepEqual(describeSql('insert into "oidc_payloads" ("id", "payload") values ($1, $2) on conflict ("id") do update set "payload" = excluded."payload"'), { operation: 'INSERT', table: 'oidc_payloads' });
    assert.deepEqual(describeSql('update "public"."clients" set "name" = $1'), { operation: 'UPDATE', table: 'clients' });
    assert.deepEqual(describeSql('delete from "events" where "at" < now()'), { operation: 'DELETE', table: 'events' });
    assert.deepEqual(describeSql("select 'secret-literal' as x"), { operation: 'SELECT', table: undefined });
    assert.deepEqual(describeSql('select 1'), { operation: 'SELECT', table: undefined });
    assert.deepEqual(describeSql('vacuum full'), { operation: 'OTHER', table: undefined });
    assert.deepEqual(describeSql(undefined), { operation: 'OTHER', table: undefined });
  });
});
