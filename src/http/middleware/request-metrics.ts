import type { Middleware } from 'koa';
import type { Metrics } from '../../infra/metrics.ts';
import { knownMethod, routeTemplate } from './route-template.ts';

type Labels = { method: string; route: string; status: string };

// Label sets are few (methods × route templates × statuses); one object each is kept rather than
// one built per request (prom-client's startTimer copies its labels on every observation).
const MAX_LABEL_SETS = 2000;

/** Times every request under its route template (route-template.ts), or "unmatched". */
export function requestMetrics(metrics: Metrics): Middleware {
  const labelSets = new Map<string, Labels>();
  const labelsFor = (method: string, route: string, status: string): Labels => {
    const key = `${method} ${status} ${route}`;
    let labels = labelSets.get(key);
    if (!labels) {
      labels = { method, route, status };
      if (labelSets.size < MAX_LABEL_SETS) labelSets.set(key, labels);
    }
    return labels;
  };
  return async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      const route = routeTemplate(ctx) ?? 'unmatched';
      const method = knownMethod(ctx.method, 'other');
      metrics.httpDuration.observe(labelsFor(method, route, String(ctx.status)), (performance.now() - started) / 1000);
    }
  };
}
