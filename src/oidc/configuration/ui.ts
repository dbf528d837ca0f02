import type { Context } from 'koa';
import type { Configuration } from 'oidc-provider';
import type { Locale, MessageKey } from '../../i18n/index.ts';

export interface PageData {
  locale?: Locale;
  title: MessageKey;
  [key: string]: unknown;
}

/** Renders a page of views/pages; implemented by http/render.ts. */
export type RenderPage = (ctx: Context, page: string, data: PageData, status?: number) => void;

/**
 * The provider's own pages (error, logout) rendered with our templates. Their inputs can echo
 * request parameters, which the auto-escaping templates neutralise.
 */
export function uiConfiguration(renderPage: RenderPage): Configuration {
  return {
    renderError: async (ctx, out) => {
      renderPage(ctx, 'error', { title: 'errorpage.title', code: out.error, description: out.error_description }, ctx.status);
    },
    features: {
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          // A first-party client (the account console: no consent screen either) that proves the
          // session with a valid id_token_hint already asked with its own "Sign out" button: the
          // page confirms by itself (forms.js), and stays a question without JavaScript.
          const asked = ctx.oidc.client?.first_party === true && ctx.oidc.entities.IdTokenHint !== undefined;
          renderPage(ctx, 'logout', { title: 'logout.title', form, asked });
        },
        postLogoutSuccessSource: async (ctx) => renderPage(ctx, 'logout-done', { title: 'logout.done' }),
      },
    },
  };
}
