import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger, requestLineLogger } from '../../src/infra/logger.ts';
import { logCapture } from '../helpers/log-capture.ts';

describe('the request line logger', () => {
  it('writes the request line to the same destination, while every other line keeps its redaction', async () => {
    const logs = logCapture();
    const logger = createLogger('info', logs.stream);
    requestLineLogger(logger).info({ requestId: 'r1', method: 'POST', path: '/token', status: 200 }, 'request');
    logger.info({ password: 'hunter2', client: { client_secret: 's3cret' }, token: 't0ken' }, 'other');
    await new Promise((resolve) => setImmediate(resolve));
    const request = logs.lines.find((l) => l.msg === 'request');
    assert.equal(request?.requestId, 'r1');
    assert.equal(request?.path, '/token');
    assert.equal(request?.service, 'idp');
    const other = logs.lines.find((l) => l.msg === 'other')!;
    assert.equal(other.password, '[redacted]');
    assert.equal((other.client as Record<string, unknown>).client_secret, '[redacted]');
    assert.equal(other.token, '[redacted]');
  });

  it('follows the level: at warn no request line is written', async () => {
    const logs = logCapture();
    const lines = requestLineLogger(createLogger('warn', logs.stream));
    assert.equal(lines.isLevelEnabled('info'), false);
    lines.info({ path: '/token' }, 'request');
    lines.error({ path: '/token', status: 500 }, 'request');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(logs.messages(), ['request']);
    assert.equal(logs.lines[0]!.status, 500);
  });
});
