import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/infra/logger.ts';
import { logCapture } from '../helpers/log-capture.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

describe('W3C trace context', () => {
  let ts: TestServer;
  const logs = logCapture();
  before(async () => {
    ts = await startTestServer({}, { logger: createLogger('info', logs.stream) });
  });
  after(() => ts.stop());

  /** GET `path` with `traceparent`; the traceresponse parts and the request's log line. */
  async function get(path: string, traceparent?: string) {
    const res = await fetch(new URL(path, ts.issuer), { headers: traceparent ? { traceparent } : {} });
    await res.arrayBuffer();
    const header = res.headers.get('traceresponse') ?? '';
    const [version, traceId, spanId, flags] = header.split('-');
    const requestId = res.headers.get('x-request-id');
    const line = logs.lines.find((l) => l.msg === 'request' && l.requestId === requestId);
    return { status: res.status, version, traceId, spanId, flags, line };
  }

  it('continues an incoming trace: its trace id in the answer and the log line, a span of our own', async () => {
    for (const path of ['/.well-known/openid-configuration', '/api/v1/users', '/no-such-page']) {
      const out = await get(path, `00-${TRACE}-${PARENT}-01`);
      assert.equal(out.version, '00');
      assert.equal(out.traceId, TRACE, path);
      assert.match(out.spanId ?? '', /^[0-9a-f]{16}$/);
      assert.notEqual(out.spanId, PARENT, 'this request is a new span under the caller\'s');
      assert.equal(out.flags, '01', 'the sampled flag is kept');
      assert.equal(out.line?.traceId, TRACE, `${path}: the log line carries the trace id`);
      assert.equal(out.line?.spanId, out.spanId);
    }
  });

  it('starts a new trace when there is none, or when the header is malformed', async () => {
    const seen = new Set<string>();
    for (const header of [undefined, `00-${'0'.repeat(32)}-${PARENT}-01`, `00-${TRACE}-${'0'.repeat(16)}-01`, `ff-${TRACE}-${PARENT}-01`, `00-${TRACE.toUpperCase()}-${PARENT}-01`, 'garbage', `00-${TRACE}-${PARENT}-01-extra`]) {
      const out = await get('/healthz', header);
      assert.match(out.traceId ?? '', /^[0-9a-f]{32}$/, String(header));
      assert.notEqual(out.traceId, TRACE, `${header}: not continued`);
      assert.notEqual(out.traceId, '0'.repeat(32));
      assert.equal(out.flags, '00');
      seen.add(out.traceId!);
    }
    assert.equal(seen.size, 7, 'each new trace has an id of its own');
  });

  it('a later version with more fields is continued (forward compatible)', async () => {
    const out = await get('/healthz', `01-${TRACE}-${PARENT}-01-future`);
    assert.equal(out.traceId, TRACE);
  });
});
