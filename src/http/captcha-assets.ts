import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import Router from '@koa/router';

/**
 * The ALTCHA widget, served by us (no CDN) under our strict CSP. We use the package's
 * "external" build: the default build injects a <style> element and starts its workers from
 * blob: URLs, both refused by `style-src 'self'` / `script-src 'self'`. The external build has
 * its CSS in a file and ships no solver, so a small module of ours registers the SHA worker,
 * loaded from our origin (worker-src falls back to script-src 'self'; no CSP change needed).
 *
 *   /assets/altcha.js             our entry module (what the page loads)
 *   /assets/altcha-widget.js      altcha/dist/external/altcha.min.js (the <altcha-widget> element)
 *   /assets/altcha-i18n-vi.js     altcha/dist/i18n/vi.js (our second locale; the widget follows <html lang>)
 *   /assets/altcha-worker-sha.js  altcha/dist/workers/sha.js (classic worker, solves SHA-* challenges)
 *   /assets/altcha.css            altcha/dist/external/altcha.css
 */
const ENTRY = `import './altcha-widget.js';
import './altcha-i18n-vi.js';
// The external build bundles no solver. Resolved against this module, so a path prefix still works.
const sha = () => new Worker(new URL('./altcha-worker-sha.js', import.meta.url));
for (const name of ['SHA-256', 'SHA-384', 'SHA-512']) globalThis.$altcha.algorithms.set(name, sha);
`;

interface Asset {
  type: string;
  body: Buffer;
}

function altchaDist(): string {
  // The package's exports map hides package.json, so resolve an exported entry and walk up.
  const require = createRequire(import.meta.url);
  const external = require.resolve('altcha/external');
  return path.resolve(path.dirname(external), '..');
}

/** Reads the files once; call at startup (a missing file fails the boot, not a request). */
function loadAssets(): Map<string, Asset> {
  const dist = altchaDist();
  const js = (file: string): Asset => ({ type: 'text/javascript; charset=utf-8', body: readFileSync(path.join(dist, file)) });
  return new Map<string, Asset>([
    ['/assets/altcha.js', { type: 'text/javascript; charset=utf-8', body: Buffer.from(ENTRY) }],
    ['/assets/altcha-widget.js', js('external/altcha.min.js')],
    ['/assets/altcha-i18n-vi.js', js('i18n/vi.js')],
    ['/assets/altcha-worker-sha.js', js('workers/sha.js')],
    ['/assets/altcha.css', { type: 'text/css; charset=utf-8', body: readFileSync(path.join(dist, 'external/altcha.css')) }],
  ]);
}

/** GET routes for the ALTCHA widget files; mount with provider.use(router.routes()). */
export function captchaAssetRoutes(): Router {
  const assets = loadAssets();
  const router = new Router();
  for (const [url, asset] of assets) {
    router.get(url, (ctx) => {
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.type = asset.type;
      ctx.body = asset.body;
    });
  }
  return router;
}
