import Router from '@koa/router';
import type { Context } from 'koa';
import { consentStep } from './consent.ts';
import { federationStep } from './federation.ts';
import { enrolmentStep, totpEnrolment } from './enroll.ts';
import { loginStep } from './login.ts';
import { magicLinkStep } from './magic-link.ts';
import { registerStep } from './register.ts';
import { sentCodeMethods } from './code-factors.ts';
import { codeMethods, secondFactorStep } from './second-factor.ts';
import { createShared, detailsOf, finish, type InteractionDeps } from './shared.ts';
import { createSignIn } from './sign-in.ts';
import { verifyStep } from './verify.ts';
import { passkeyStep, webauthnMethod } from './webauthn.ts';

/**
 * The sign-in and consent pages under /interaction/:uid, one module per step on the middlewares of
 * shared.ts. They talk to the provider only through interactionDetails/interactionResult and the
 * Grant model; only sign-in.ts completes a sign-in.
 */
export function interactionRoutes(deps: InteractionDeps) {
  const router = new Router({ prefix: '/interaction/:uid' });
  const shared = createShared(deps);
  // The second factors a person can set up within a sign-in (a passkey's enrolment joins here).
  const enrolments = [totpEnrolment(deps)];
  const signIn = createSignIn({
    provider: deps.provider,
    accounts: deps.accounts,
    registrationDefaults: deps.account.registrationDefaults,
    mfa: deps.account.mfa,
    smsEnabled: deps.account.codeFactors.smsEnabled,
    mfaPolicy: deps.account.mfaPolicy,
    acrLevels: deps.acrLevels,
    enrollable: enrolments.map((m) => m.factor),
  });
  const { form, interaction, csrfChecked, loginPending } = shared;
  const federation = federationStep(shared, signIn, deps);
  const login = loginStep(shared, signIn, deps, (email, tenantId) => federation.providerForEmail(email, tenantId), (ctx, details, p) => federation.start(ctx, details, p));
  const register = registerStep(shared, deps);
  const verify = verifyStep(shared, signIn, deps);
  const magicLink = magicLinkStep(shared, signIn, deps);
  const consent = consentStep(shared, deps);
  const passkey = passkeyStep(shared, signIn, deps);
  const secondFactor = secondFactorStep(shared, signIn, deps, [webauthnMethod(deps), ...codeMethods(deps), ...sentCodeMethods(deps, shared)]);
  const enrolment = enrolmentStep(shared, signIn, deps, enrolments);

  router.get('/', interaction(), async (ctx: Context) => {
    const details = detailsOf(ctx);
    if (details.prompt.name === 'login') {
      // A level no factor reaches is refused at once; a signed-in user short of the level steps up.
      if (await signIn.unattainable(ctx, details)) return;
      if (await signIn.stepUp(ctx, details)) return;
      return shared.renderLogin(ctx, details);
    }
    if (details.prompt.name === 'consent') return consent.show(ctx, details);
    ctx.throw(400, `unsupported prompt ${details.prompt.name}`);
  });
  router.post('/login', form, interaction(), csrfChecked, loginPending, login.submit);
  router.post('/federate/:alias', form, interaction(), csrfChecked, loginPending, federation.begin);
  router.get('/federated', interaction(), loginPending, federation.finish);
  router.post('/federated/link', form, interaction(), csrfChecked, loginPending, federation.link);
  router.post('/passkey/options', form, interaction(), csrfChecked, loginPending, passkey.options);
  router.post('/passkey', form, interaction(), csrfChecked, loginPending, passkey.submit);
  router.get('/mfa', interaction(), loginPending, secondFactor.show);
  router.post('/mfa', form, interaction(), csrfChecked, loginPending, secondFactor.submit);
  router.get('/mfa/enroll', interaction(), loginPending, enrolment.show);
  router.post('/mfa/enroll', form, interaction(), csrfChecked, loginPending, enrolment.submit);
  router.get('/register', interaction(), loginPending, register.show);
  router.post('/register', form, interaction(), csrfChecked, loginPending, register.submit);
  router.post('/verify-email', form, interaction(), csrfChecked, loginPending, verify.submit);
  router.post('/verify-email/resend', form, interaction(), csrfChecked, verify.resend);
  router.post('/magic-link', form, interaction(), csrfChecked, loginPending, magicLink.send);
  router.get('/magic-link', interaction(magicLink.otherBrowser), loginPending, magicLink.open);
  router.post('/confirm', form, interaction(), csrfChecked, consent.confirm);
  router.post('/abort', form, interaction(), csrfChecked, async (ctx: Context) => {
    await finish(ctx, detailsOf(ctx), { error: 'access_denied', error_description: 'End-User aborted interaction' });
  });

  return router;
}
