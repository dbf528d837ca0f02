import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import Router from '@koa/router';
import { projectRoot } from '../infra/paths.ts';

/**
 * The WebAuthn scripts of the login, second-step and console pages, served by us under the strict
 * CSP (script-src 'self', no inline script):
 *
 *   /assets/webauthn-browser.js   @simplewebauthn/browser's UMD bundle (window.SimpleWebAuthnBrowser)
 *   /assets/webauthn.js           views/assets/webauthn.js: runs the ceremony of a form marked data-webauthn
 */
function browserBundle(): Buffer {
  // The package exports only its entry points: resolve one and walk up to the package.
  const require = createRequire(import.meta.url);
  const entry = require.resolve('@simplewebauthn/browser');
  return readFileSync(path.join(path.dirname(entry), '..', 'dist', 'bundle', 'index.umd.min.js'));
}

/** GET routes for the two scripts, read once at startup (a missing file fails the boot, not a request). */
export function webauthnAssetRoutes(): Router {
  const assets = new Map<string, Buffer>([
    ['/assets/webauthn-browser.js', browserBundle()],
    ['/assets/webauthn.js', readFileSync(path.join(projectRoot(), 'views', 'assets', 'webauthn.js'))],
  ]);
  const router = new Router();
  for (const [url, body] of assets) {
    router.get(url, (ctx) => {
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.type = 'text/javascript; charset=utf-8';
      ctx.body = body;
    });
  }
  return router;
}
