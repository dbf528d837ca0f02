import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import type http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { adminAudience } from '../../src/domain/clients/admin-scopes.ts';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, ALL_SCOPES, basic } from '../helpers/admin.ts';
import { createTestStore, freePort, listenOn, portOf, startTestServer, stopAndDestroy, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { createLogger } from '../../src/infra/logger.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * OpenTelemetry tracing against a small OTLP/HTTP receiver of our own: what the server exports
 * when OTEL_EXPORTER_OTLP_ENDPOINT is set, and that nothing of the SDK is loaded when it is not.
 */

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
  status?: { code?: number };
}

const SERVER = 2;
const CLIENT = 3;
const STATUS_ERROR = 2;

/** Receives OTLP/HTTP JSON posts; keeps the raw bodies (for the no-secrets check) and the spans. */
async function startReceiver() {
  const bodies: string[] = [];
  const contentTypes: string[] = [];
  const server = await listenOn(0);
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.method === 'POST') {
        bodies.push(Buffer.concat(chunks).toString('utf8'));
        contentTypes.push(String(req.headers['content-type']));
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return {
    url: `http://127.0.0.1:${portOf(server)}`,
    bodies,
    contentTypes,
    spans(): Array<OtlpSpan & { resource: Record<string, unknown> }> {
      return bodies.flatMap((body) =>
        (JSON.parse(body) as { resourceSpans: Array<{ resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> }).resourceSpans.flatMap((rs) =>
          rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ ...s, resource: attributesOf(rs.resource) }))),
        ),
      );
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function attributesOf(item: { attributes?: OtlpSpan['attributes'] }): Record<string, unknown> {
  return Object.fromEntries((item.attributes ?? []).map(({ key, value }) => [key, Object.values(value)[0]]));
}

// Whether any part of the SDK was loaded into this process (CommonJS packages, in require.cache).
const require = createRequire(import.meta.url);
const sdkLoaded = () => Object.keys(require.cache).some((file) => /[\\/]@opentelemetry[\\/](sdk-trace|exporter-trace-otlp-http|context-async-hooks)/.test(file));

const traceparent = () => ({ traceId: randomBytes(16).toString('hex'), parent: randomBytes(8).toString('hex') });

function traceresponseOf(res: Response) {
  const [version = '', traceId = '', spanId = '', flags = ''] = (res.headers.get('traceresponse') ?? '').split('-');
  return { version, traceId, spanId, flags };
}

describe('OpenTelemetry tracing', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  before(async () => {
    receiver = await startReceiver();
  });
  after(() => receiver.close());

  it('is off without an endpoint: no SDK loaded, nothing exported, the trace headers as before', async () => {
    // Every other tracing setting, but no endpoint.
    const ts = await startTestServer({ OTEL_SERVICE_NAME: 'idp-test', OTEL_TRACES_SAMPLER: 'always_on', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' });
    try {
      const { traceId, parent } = traceparent();
      const res = await fetch(new URL('/.well-known/openid-configuration', ts.issuer), { headers: { traceparent: `00-${traceId}-${parent}-00` } });
      await res.arrayBuffer();
      const out = traceresponseOf(res);
      assert.equal(out.traceId, traceId);
      assert.equal(out.flags, '00', 'the caller\'s flags, unchanged');
      assert.notEqual(out.spanId, parent);
      assert.equal(sdkLoaded(), false, 'the OpenTelemetry SDK is not loaded');
    } finally {
      await stopAndDestroy(ts);
    }
    assert.equal(receiver.bodies.length, 0, 'nothing was exported');
  });

  describe('with OTEL_EXPORTER_OTLP_ENDPOINT', () => {
    let ts: TestServer;
    const password = `Tracing-pass ${randomBytes(9).toString('base64url')}`;
    const email = `traced-${randomBytes(4).toString('hex')}@example.com`;
    let hibp: http.Server;
    const hibpTraceparents: string[] = [];
    let accessToken = '';
    const token = { ...traceparent(), answer: { version: '', traceId: '', spanId: '', flags: '' } };
    const create = { ...traceparent(), answer: { version: '', traceId: '', spanId: '', flags: '' }, status: 0 };
    const opaque = traceparent();
    const unsampled = { ...traceparent(), answer: { version: '', traceId: '', spanId: '', flags: '' } };
    const failing = { ...traceparent(), answer: { version: '', traceId: '', spanId: '', flags: '' }, status: 0, id: randomUUID() };

    before(async () => {
      // The breached-password range API: an outgoing call the server makes during the request.
      hibp = await listenOn(0);
      hibp.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        hibpTraceparents.push(String(req.headers.traceparent ?? ''));
        res.writeHead(200, { 'content-type': 'text/plain' }).end('');
      });
      ts = await startTestServer({
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,team=identity%20platform',
        BOOTSTRAP_ADMIN_CLIENT_ID: ADMIN_CLIENT_ID,
        BOOTSTRAP_ADMIN_CLIENT_SECRET: ADMIN_CLIENT_SECRET,
        HIBP_RANGE_URL: `http://127.0.0.1:${portOf(hibp)}/range`,
        PASSWORD_MIN_SCORE: '0',
      });

      // A token request: the client secret goes in, an access token comes out.
      const tokenRes = await fetch(new URL('/token', ts.issuer), {
        method: 'POST',
        headers: {
          authorization: basic(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET),
          'content-type': 'application/x-www-form-urlencoded',
          traceparent: `00-${token.traceId}-${token.parent}-01`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource: adminAudience(ts.issuer), scope: ALL_SCOPES.join(' ') }).toString(),
      });
      assert.equal(tokenRes.status, 200);
      accessToken = ((await tokenRes.json()) as { access_token: string }).access_token;
      token.answer = traceresponseOf(tokenRes);

      // An opaque token (no resource): its row is written by the token path's prepared statement.
      const opaqueRes = await fetch(new URL('/token', ts.issuer), {
        method: 'POST',
        headers: { authorization: basic(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET), 'content-type': 'application/x-www-form-urlencoded', traceparent: `00-${opaque.traceId}-${opaque.parent}-01` },
        body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
      });
      assert.equal(opaqueRes.status, 200, await opaqueRes.clone().text());
      await opaqueRes.arrayBuffer();

      // A user with a password: database writes, argon2, and the breached-password check.
      const createRes = await fetch(new URL('/api/v1/users', ts.issuer), {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', traceparent: `00-${create.traceId}-${create.parent}-01` },
        body: JSON.stringify({ email, password, emailVerified: true }),
      });
      create.status = createRes.status;
      await createRes.arrayBuffer();
      create.answer = traceresponseOf(createRes);

      // A caller that does not sample: its decision is kept (parent-based sampler), nothing recorded.
      const unsampledRes = await fetch(new URL('/.well-known/openid-configuration', ts.issuer), { headers: { traceparent: `00-${unsampled.traceId}-${unsampled.parent}-00` } });
      await unsampledRes.arrayBuffer();
      unsampled.answer = traceresponseOf(unsampledRes);

      // A request the database fails (its table gone for a moment): a 5xx.
      const db = ts.server.services.db;
      await db.raw('alter table resource_servers rename to resource_servers_away');
      try {
        const failingRes = await fetch(new URL(`/api/v1/resource-servers/${failing.id}`, ts.issuer), {
          headers: { authorization: `Bearer ${accessToken}`, traceparent: `00-${failing.traceId}-${failing.parent}-01` },
        });
        failing.status = failingRes.status;
        await failingRes.arrayBuffer();
        failing.answer = traceresponseOf(failingRes);
      } finally {
        await db.raw('alter table resource_servers_away rename to resource_servers');
      }

      assert.equal(sdkLoaded(), true, 'the SDK is loaded once an endpoint is set');
      // Stopping flushes what the batch processor holds (the SIGTERM path): everything is exported by now.
      await stopAndDestroy(ts);
      hibp.close();
    });

    it('posts OTLP/HTTP JSON, with service.name idp and the resource attributes', () => {
      assert.ok(receiver.bodies.length > 0, 'spans were exported');
      assert.ok(receiver.contentTypes.every((t) => t.startsWith('application/json')), receiver.contentTypes.join());
      const [first] = receiver.spans();
      assert.equal(first?.resource['service.name'], 'idp');
      assert.equal(first?.resource['deployment.environment.name'], 'test');
      assert.equal(first?.resource.team, 'identity platform', 'values are percent-decoded');
    });

    it('one SERVER span per request, under the caller\'s span, with the ids of the traceresponse header', () => {
      assert.equal(token.answer.traceId, token.traceId);
      assert.equal(token.answer.flags, '01');
      const spans = receiver.spans();
      const server = spans.filter((s) => s.kind === SERVER && s.traceId === token.traceId);
      assert.equal(server.length, 1, JSON.stringify(server.map((s) => s.name)));
      const span = server[0]!;
      assert.equal(span.spanId, token.answer.spanId, 'the span is the one the traceresponse header names');
      assert.equal(span.parentSpanId, token.parent, 'the caller\'s span is the parent');
      assert.equal(span.name, 'POST /token');
      const attrs = attributesOf(span);
      assert.equal(attrs['http.request.method'], 'POST');
      assert.equal(Number(attrs['http.response.status_code']), 200);
      assert.notEqual(span.status?.code, STATUS_ERROR);

      assert.equal(create.status, 201);
      const createSpan = spans.find((s) => s.kind === SERVER && s.traceId === create.traceId);
      assert.equal(createSpan?.spanId, create.answer.spanId);
      assert.equal(createSpan?.parentSpanId, create.parent);
      assert.equal(createSpan?.name, 'POST /api/v1/users', 'the route template, not the raw path');
      assert.equal(attributesOf(createSpan!)['http.route'], '/api/v1/users');
    });

    it('database queries are child spans: postgresql, operation and table', () => {
      const spans = receiver.spans();
      const createSpan = spans.find((s) => s.kind === SERVER && s.traceId === create.traceId)!;
      const queries = spans.filter((s) => s.traceId === create.traceId && attributesOf(s)['db.system.name'] === 'postgresql');
      assert.ok(queries.length > 0, 'queries recorded');
      const insert = queries.find((s) => s.name === 'INSERT users');
      assert.ok(insert, `an insert into users among ${queries.map((s) => s.name).join(', ')}`);
      assert.equal(insert.kind, CLIENT);
      assert.equal(attributesOf(insert)['db.system'], 'postgresql');
      assert.equal(attributesOf(insert)['db.operation.name'], 'INSERT');
      assert.equal(attributesOf(insert)['db.collection.name'], 'users');
      // Every query of the request hangs off its server span (directly, or through argon2's).
      const ids = new Set(spans.filter((s) => s.traceId === create.traceId).map((s) => s.spanId));
      for (const q of queries) assert.ok(q.parentSpanId === createSpan.spanId || ids.has(q.parentSpanId!), q.name);
      assert.ok(spans.some((s) => s.traceId === token.traceId && attributesOf(s)['db.system.name'] === 'postgresql'), 'the token request\'s queries too');
      // The token path's prepared statements (infra/db.ts runStatement) are spans like the rest.
      const payloadSpans = spans.filter((s) => s.traceId === opaque.traceId && attributesOf(s)['db.collection.name'] === 'oidc_payloads');
      assert.ok(payloadSpans.length > 0, `the token row's statement among ${spans.filter((s) => s.traceId === opaque.traceId).map((s) => s.name).join(', ')}`);
      assert.equal(payloadSpans[0]!.kind, CLIENT);
    });

    it('outgoing calls are CLIENT spans and carry the trace onward; argon2 hashing is a span', () => {
      const spans = receiver.spans();
      const outgoing = spans.find((s) => s.traceId === create.traceId && s.kind === CLIENT && attributesOf(s)['server.address'] === '127.0.0.1' && !attributesOf(s)['db.system.name']);
      assert.ok(outgoing, 'the breached-password check is a client span');
      assert.equal(outgoing.name, 'GET');
      assert.equal(Number(attributesOf(outgoing)['http.response.status_code']), 200);
      assert.ok(hibpTraceparents.includes(`00-${create.traceId}-${outgoing.spanId}-01`), `traceparent sent onward: ${hibpTraceparents.join()}`);
      assert.ok(spans.some((s) => s.traceId === create.traceId && s.name === 'argon2 hash'), 'the password hash');
    });

    it('a 5xx is an error, and so is the query that failed (its SQLSTATE, not its message)', () => {
      assert.ok(failing.status >= 500, `status ${failing.status}`);
      const spans = receiver.spans().filter((s) => s.traceId === failing.traceId);
      const server = spans.find((s) => s.kind === SERVER);
      assert.equal(server?.spanId, failing.answer.spanId);
      assert.equal(server?.name, 'GET /api/v1/resource-servers/:id', 'the template, not the id');
      assert.equal(server?.status?.code, STATUS_ERROR);
      assert.equal(Number(attributesOf(server!)['http.response.status_code']), failing.status);
      assert.equal(attributesOf(server!)['error.type'], String(failing.status));
      const query = spans.find((s) => s.name === 'SELECT resource_servers');
      assert.equal(query?.status?.code, STATUS_ERROR);
      assert.equal(attributesOf(query!)['error.type'], '42P01', 'undefined_table');
      assert.ok(!receiver.bodies.join('\n').includes(failing.id), 'the id in the path is not exported');
      // The successful ones are not errors.
      assert.ok(receiver.spans().filter((s) => s.traceId === create.traceId).every((s) => s.status?.code !== STATUS_ERROR));
    });

    it('keeps an unsampled caller\'s decision: nothing recorded, its flags answered', () => {
      assert.equal(unsampled.answer.traceId, unsampled.traceId);
      assert.equal(unsampled.answer.flags, '00');
      assert.equal(receiver.spans().filter((s) => s.traceId === unsampled.traceId).length, 0);
    });

    it('no span carries the client secret, the token, the password, the email or SQL values', () => {
      const exported = receiver.bodies.join('\n');
      for (const [what, secret] of [['client secret', ADMIN_CLIENT_SECRET], ['access token', accessToken], ['password', password], ['email', email], ['basic credentials', basic(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET)]] as const) {
        assert.ok(secret && !exported.includes(secret), `${what} not exported`);
      }
      // Span names and attributes are templates and names, never SQL text.
      assert.ok(!/select\s+["*]|insert into|\$\d|values\s*\(|\bwhere\b/i.test(exported), 'no SQL text');
    });
  });

  it('a collector that is down costs nothing but log lines: requests are answered and the server stops', async () => {
    const logs = logCapture();
    const ts = await startTestServer({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}` }, { logger: createLogger('warn', logs.stream) });
    try {
      const res = await fetch(new URL('/.well-known/openid-configuration', ts.issuer), { headers: { traceparent: `00-${traceparent().traceId}-${traceparent().parent}-01` } });
      await res.arrayBuffer();
      assert.equal(res.status, 200);
    } finally {
      await stopAndDestroy(ts);
    }
    assert.ok(logs.messages().some((m) => m.startsWith('tracing')), `a warning about the collector: ${logs.messages().join(' | ')}`);
  });

  it('the server process exports what it holds when it gets SIGTERM', async () => {
    const store = await createTestStore();
    const child = spawn(process.execPath, ['src/main.ts'], {
      cwd: root,
      // The batch delay is far longer than the test: only the shutdown flush can deliver the span.
      env: { ...process.env, ...store.env, PORT: '0', LOG_LEVEL: 'info', NODE_ENV: 'test', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '600000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let logs = '';
      child.stdout.on('data', (d) => (logs += d));
      child.stderr.on('data', (d) => (logs += d));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const port = await waitFor('the server to log its port', () => /"msg":"listening"/.test(logs) && (JSON.parse(logs.split('\n').find((l) => l.includes('"msg":"listening"'))!) as { port: number }).port, 60_000);
      const { traceId, parent } = traceparent();
      const res = await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`, { headers: { traceparent: `00-${traceId}-${parent}-01` } });
      await res.arrayBuffer();
      const { spanId } = traceresponseOf(res);
      assert.equal(receiver.spans().some((s) => s.traceId === traceId), false, 'not exported before the shutdown');
      child.kill('SIGTERM');
      assert.equal(await exited, 0, logs);
      const span = receiver.spans().find((s) => s.traceId === traceId && s.kind === SERVER);
      assert.equal(span?.spanId, spanId);
      assert.equal(span?.parentSpanId, parent);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await store.destroy();
    }
  });
});
