import { bodyParser } from '@koa/bodyparser';
import type { Context, Next } from 'koa';
import { errors, type InteractionResults } from 'oidc-provider';
import type Provider from 'oidc-provider';
import type { Accounts, ChangeContext } from '../../domain/authn/accounts.ts';
import type { Federation } from '../../domain/federation/federation.ts';
import type { FederationBinding } from '../federation-binding.ts';
import type { AcrLevel } from '../../domain/authn/sign-in-flow.ts';
import type { Limiter } from '../../infra/ephemeral/index.ts';
import { negotiate, type MessageKey } from '../../i18n/index.ts';
import type { AccountFlowDeps } from '../account-flows.ts';
import { clientLimitKey } from '../middleware/rate-limit.ts';
import { registrationPolicyOf } from '../registration.ts';
import type { RenderPage } from '../render.ts';
import type { Csrf } from './csrf.ts';
import { tenantOf } from './tenant.ts';

// What every step under /interaction/:uid shares: loading the interaction, the CSRF check, the
// per-IP limit and the pages more than one step renders.

export interface InteractionDeps {
  provider: Provider;
  accounts: Accounts;
  csrf: Csrf;
  renderPage: RenderPage;
  loginLimiter: Limiter;
  /** Registration, verification and magic links inside a pending sign-in. */
  account: AccountFlowDeps;
  /** Limits the account steps' posts (registration, codes, links) per IP. */
  flowLimiter: Limiter;
  /** ACR_VALUES, weakest first. */
  acrLevels: readonly AcrLevel[];
  /** Upstream identity providers: the login page's "Continue with …" and their sign-ins. */
  federation: Federation;
  federationBinding: FederationBinding;
}

export type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

/**
 * The change context of a sign-in step: the person signing in acts (the domain names them once the
 * account is known); the relying party that asked is kept for the events' payloads.
 */
export const flowContext = (ctx: Context, details: Details): ChangeContext => ({
  clientId: details.params.client_id as string,
  requestId: ctx.state.requestId as string,
});

/**
 * Stores `result` in the interaction (replacing the previous one whole), as the provider's
 * interactionResult does, but on the interaction this request already loaded and checked
 * (`interaction` below: its cookie, its session) rather than reading it again: one database read
 * fewer on every step that completes or advances a sign-in.
 */
export async function saveResult(details: Details, result: InteractionResults): Promise<void> {
  const ttl = details.exp - Math.floor(Date.now() / 1000);
  // Expired while this request ran: what interactionResult's own read would have found.
  if (ttl <= 0) throw new errors.SessionNotFound('interaction session not found');
  details.result = result;
  await details.save(ttl);
}

/** Gives the provider this interaction's result and resumes the authorization. */
export async function finish(ctx: Context, details: Details, result: InteractionResults) {
  await saveResult(details, result);
  ctx.status = 303;
  ctx.redirect(details.returnTo);
}

/** The interaction the `interaction` middleware loaded. */
export const detailsOf = (ctx: Context): Details => ctx.state.interaction as Details;

export function createShared(deps: InteractionDeps) {
  const { provider, csrf, renderPage, account } = deps;

  async function load(ctx: Context): Promise<Details> {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    // The uid in the path must be the one the browser's interaction cookie is bound to.
    if (details.uid !== ctx.params.uid) ctx.throw(400, 'interaction mismatch');
    ctx.set('Cache-Control', 'no-store');
    return details;
  }

  const localeOf = (ctx: Context, details: Details) =>
    negotiate(details.params.ui_locales as string | undefined, ctx.state.uiLocale, ctx.get('accept-language'));

  async function clientNameOf(details: Details): Promise<string> {
    const client = await provider.Client.find(details.params.client_id as string);
    return client?.clientName ?? (details.params.client_id as string);
  }

  const policyOf = (details: Details) =>
    registrationPolicyOf(provider, account.registrationDefaults, details.params.client_id as string);

  return {
    localeOf,
    clientNameOf,
    policyOf,

    /** Form posts, small. */
    form: bodyParser({ enableTypes: ['form'], formLimit: '16kb' }),

    /**
     * Loads the interaction the browser's cookie names into ctx.state (see `detailsOf`); with
     * `onMissing`, a request without it gets that answer instead of the error.
     */
    interaction(onMissing?: (ctx: Context) => void) {
      return async (ctx: Context, next: Next) => {
        try {
          ctx.state.interaction = await load(ctx);
        } catch (err) {
          if (!onMissing) throw err;
          return onMissing(ctx);
        }
        await next();
      };
    },

    /** A post must carry the CSRF token of its interaction (after `interaction` and `form`). */
    async csrfChecked(ctx: Context, next: Next) {
      if (!csrf.verify(detailsOf(ctx).uid, (ctx.request.body as Record<string, unknown> | undefined)?.csrf)) {
        ctx.throw(403, 'invalid CSRF token');
      }
      await next();
    },

    /** The step needs a sign-in still pending. */
    async loginPending(ctx: Context, next: Next) {
      if (detailsOf(ctx).prompt.name !== 'login') ctx.throw(400, 'no sign-in is pending');
      await next();
    },

    /** Counts a request from this IP; true when over the limit (the caller answers with its own page). */
    async limited(ctx: Context, limiter: Limiter): Promise<boolean> {
      try {
        await limiter.consume(clientLimitKey(ctx));
        return false;
      } catch (rejection) {
        if (rejection instanceof Error) throw rejection;
        return true;
      }
    },

    async renderLogin(ctx: Context, details: Details, extra: { error?: MessageKey; email?: string } = {}, status = 200) {
      const policy = await policyOf(details);
      const providers = (await deps.federation.identityProviders.enabled(tenantOf(details))).map((p) => ({ displayName: p.displayName, action: `/interaction/${details.uid}/federate/${encodeURIComponent(p.alias)}` }));
      renderPage(
        ctx,
        'login',
        {
          title: 'login.title',
          locale: localeOf(ctx, details),
          clientName: await clientNameOf(details),
          action: `/interaction/${details.uid}/login`,
          abortAction: `/interaction/${details.uid}/abort`,
          magicAction: `/interaction/${details.uid}/magic-link`,
          passkeyAction: `/interaction/${details.uid}/passkey`,
          passkeyOptionsAction: `/interaction/${details.uid}/passkey/options`,
          // The language the relying party asked for goes along (ui-locale.ts keeps it too).
          forgotUrl: `/forgot-password?interaction=${encodeURIComponent(details.uid)}${typeof details.params.ui_locales === 'string' ? `&ui_locales=${encodeURIComponent(details.params.ui_locales)}` : ''}`,
          registerUrl: policy.enabled ? `/interaction/${details.uid}/register` : undefined,
          providers,
          csrf: csrf.issue(details.uid),
          ...extra,
        },
        status,
      );
    },

    /** The code form that completes this sign-in once the address is proven. */
    renderVerify(ctx: Context, details: Details, email: string, extra: Record<string, unknown> = {}, status = 200) {
      renderPage(ctx, 'verify-email', {
        title: 'verify.title',
        locale: localeOf(ctx, details),
        email,
        action: `/interaction/${details.uid}/verify-email`,
        resendAction: `/interaction/${details.uid}/verify-email/resend`,
        csrf: csrf.issue(details.uid),
        ...extra,
      }, status);
    },
  };
}

export type Shared = ReturnType<typeof createShared>;
