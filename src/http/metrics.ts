import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../infra/logger.ts';
import type { Metrics } from '../infra/metrics.ts';

/**
 * The metrics listener's only route: GET /metrics in Prometheus text. It runs on its own port
 * (METRICS_PORT, bound to METRICS_HOST), never on the public one, so the proxy never exposes it.
 */
export function metricsListener(metrics: Metrics, logger: Logger) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: only GET /metrics is served here\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': metrics.registry.contentType, 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        logger.error({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  };
}
