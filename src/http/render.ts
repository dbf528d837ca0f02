import path from 'node:path';
import { Eta } from 'eta';
import type { Context } from 'koa';
import { negotiate, translate, type MessageKey } from '../i18n/index.ts';
import { projectRoot } from '../infra/paths.ts';
import type { RenderPage } from '../oidc/configuration/ui.ts';

export type { RenderPage };

/**
 * Server-rendered pages from views/ with Eta (auto-escaping on). Pages get `t` bound to the
 * negotiated locale; they hold no logic beyond loops and conditionals.
 */
export function createRenderer(): RenderPage {
  const eta = new Eta({ views: path.join(projectRoot(), 'views'), autoEscape: true, cache: true });
  return (ctx: Context, page, data, status = 200) => {
    const locale = data.locale ?? negotiate(ctx.query.ui_locales as string | undefined, ctx.state.uiLocale, ctx.get('accept-language'));
    const t = (key: MessageKey, params?: Record<string, string>) => translate(locale, key, params);
    const body = eta.render(`pages/${page}`, { ...data, t, locale, requestId: ctx.state.requestId });
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Language', locale);
    ctx.body = body;
  };
}
