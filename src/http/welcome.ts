import { readFileSync } from 'node:fs';
import path from 'node:path';
import type Router from '@koa/router';
import { projectRoot } from '../infra/paths.ts';
import type { RenderPage } from './render.ts';

const favicon = readFileSync(path.join(projectRoot(), 'views', 'assets', 'favicon.ico'));

/**
 * `/`: what someone who opens the issuer in a browser wants first (the issuer, discovery, the
 * account console; in development how to try a sign-in), and `/favicon.ico`, which every browser
 * asks for (a 404 there is noise in every log).
 */
export function addWelcomeRoutes(router: Router, deps: { issuer: string; development: boolean; renderPage: RenderPage }): void {
  router.get('/', (ctx) => {
    deps.renderPage(ctx, 'welcome', {
      title: 'welcome.title',
      issuer: deps.issuer,
      discovery: `${deps.issuer}/.well-known/openid-configuration`,
      development: deps.development,
    });
  });
  router.get('/favicon.ico', (ctx) => {
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.type = 'image/x-icon';
    ctx.body = favicon;
  });
}
