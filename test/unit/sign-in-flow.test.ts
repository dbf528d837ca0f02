import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  attainable, flowOfSession, levelReached, nextStep, parseFlow, policyAsksSecondFactor, prove, requiredLevel, satisfies,
  secondFactorsOf, type SignInPolicy,
} from '../../src/domain/authn/sign-in-flow.ts';

// No acr levels here: these cases are about factors and amr (the acr cases set ACR_VALUES's default).
const today: SignInPolicy = { mfa: 'off', enrolled: [], acrLevels: [], requireVerifiedAddress: false };
const levels = ['pwd', 'mfa', 'phr'] as const;
const verified = { emailVerified: true };
const unverified = { emailVerified: false };
const noAcr = { acrValues: [] };

describe('sign-in flow', () => {
  it('a password completes the sign-in with amr pwd, at the time it was proven', () => {
    const flow = prove(undefined, 'a1', 'password', 1000);
    assert.deepEqual(nextStep(flow, today, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd'], authTime: 1000 });
  });

  it('a magic link completes the sign-in with amr otp', () => {
    const flow = prove(undefined, 'a1', 'magic_link', 1000);
    assert.deepEqual(nextStep(flow, today, unverified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['otp'], authTime: 1000 });
  });

  it('an email code alone completes the sign-in with amr otp', () => {
    const flow = prove(undefined, 'a1', 'email_code', 1000);
    assert.deepEqual(nextStep(flow, { ...today, requireVerifiedAddress: true }, unverified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['otp'], authTime: 1000 });
  });

  it('a password on an unproven address asks for the code when the policy wants the address proven; the code then completes with pwd and otp', () => {
    const policy = { ...today, requireVerifiedAddress: true };
    const afterPassword = prove(undefined, 'a1', 'password', 1000);
    assert.deepEqual(nextStep(afterPassword, policy, unverified, noAcr), { kind: 'verify-address', accountId: 'a1' });
    assert.equal(nextStep(afterPassword, today, unverified, noAcr).kind, 'complete', 'not asked when the policy does not want it');
    assert.equal(nextStep(afterPassword, policy, verified, noAcr).kind, 'complete', 'not asked when the address is proven');

    const afterCode = prove(afterPassword, 'a1', 'email_code', 1060);
    assert.deepEqual(nextStep(afterCode, policy, unverified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp'], authTime: 1060 });
  });

  it('an account with an authenticator owes it after the password under the optional policy; with it, amr adds otp and mfa', () => {
    const policy: SignInPolicy = { mfa: 'optional', enrolled: ['totp', 'recovery_code'], acrLevels: [], requireVerifiedAddress: false };
    const afterPassword = prove(undefined, 'a1', 'password', 1000);
    assert.deepEqual(nextStep(afterPassword, policy, verified, noAcr), { kind: 'second-factor', accountId: 'a1', options: ['totp', 'recovery_code'] });
    assert.equal(nextStep(afterPassword, { ...policy, enrolled: [] }, verified, noAcr).kind, 'complete', 'nothing enrolled, nothing owed');
    assert.deepEqual(nextStep(prove(afterPassword, 'a1', 'totp', 1030), policy, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp', 'mfa'], authTime: 1030 });
    assert.deepEqual(nextStep(prove(afterPassword, 'a1', 'recovery_code', 1030), policy, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp', 'mfa'], authTime: 1030 });
  });

  it('recovery codes count as a second factor only beside an authenticator; only then does the optional policy ask', () => {
    assert.deepEqual(secondFactorsOf(['recovery']), []);
    assert.deepEqual(secondFactorsOf(['totp']), ['totp']);
    assert.deepEqual(secondFactorsOf(['recovery', 'totp']), ['totp', 'recovery_code']);
    assert.equal(policyAsksSecondFactor('optional', secondFactorsOf(['recovery'])), false);
    assert.equal(policyAsksSecondFactor('optional', secondFactorsOf(['totp'])), true);
    assert.equal(policyAsksSecondFactor('off', secondFactorsOf(['totp'])), false);
  });

  it('every enrolled type gives its second factor, strongest first; recovery codes beside any of them', () => {
    assert.deepEqual(secondFactorsOf(['recovery', 'email', 'sms', 'totp', 'webauthn']), ['webauthn', 'totp', 'sms', 'email_otp', 'recovery_code']);
    assert.deepEqual(secondFactorsOf(['recovery', 'email']), ['email_otp', 'recovery_code']);
  });

  it('a passkey alone is multi-factor and phishing-resistant: amr swk and mfa, acr phr', () => {
    const step = nextStep(prove(undefined, 'a1', 'passkey', 1000), { ...today, acrLevels: levels }, verified, noAcr);
    assert.deepEqual(step, { kind: 'complete', accountId: 'a1', amr: ['swk', 'mfa'], acr: 'phr', authTime: 1000 });
  });

  it('a federated sign-in says fed; a provider trusted for MFA adds the upstream\'s methods and its mfa answers the policy', () => {
    const enrolled: SignInPolicy = { ...today, mfa: 'optional', enrolled: ['totp'], acrLevels: levels };
    const plain = prove(undefined, 'a1', 'federated', 1000, { provider: 'acme' });
    assert.deepEqual(nextStep(plain, { ...today, acrLevels: levels }, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['fed'], acr: 'pwd', authTime: 1000 });
    assert.equal(nextStep(plain, enrolled, verified, noAcr).kind, 'second-factor', 'untrusted: the local factor is asked');
    const trusted = prove(undefined, 'a1', 'federated', 1000, { provider: 'acme', upstreamAmr: ['pwd', 'otp', 'mfa', 'made-up'] });
    assert.deepEqual(nextStep(trusted, enrolled, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['fed', 'pwd', 'otp', 'mfa'], acr: 'mfa', authTime: 1000 });
    const singleUpstream = prove(undefined, 'a1', 'federated', 1000, { provider: 'acme', upstreamAmr: ['pwd'] });
    assert.equal(nextStep(singleUpstream, enrolled, verified, noAcr).kind, 'second-factor', 'an upstream without mfa does not answer the policy');
  });

  it('the email factor is a second factor beside a password, never beside another proof from the same mailbox', () => {
    const afterPassword = prove(prove(undefined, 'a1', 'password', 1000), 'a1', 'email_otp', 1010);
    assert.deepEqual(nextStep(afterPassword, today, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp', 'mfa'], authTime: 1010 });
    const afterMailbox = prove(prove(undefined, 'a1', 'magic_link', 1000), 'a1', 'email_otp', 1010);
    assert.deepEqual(nextStep(afterMailbox, today, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['otp'], authTime: 1010 });
  });

  it('an SMS code after a password is mfa: amr pwd, sms, mfa and acr mfa; after a magic link too', () => {
    const policy: SignInPolicy = { ...today, mfa: 'optional', enrolled: ['sms'], acrLevels: levels };
    const afterPassword = prove(undefined, 'a1', 'password', 1000);
    assert.deepEqual(nextStep(afterPassword, policy, verified, noAcr), { kind: 'second-factor', accountId: 'a1', options: ['sms'] });
    assert.deepEqual(nextStep(prove(afterPassword, 'a1', 'sms', 1010), policy, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'sms', 'mfa'], acr: 'mfa', authTime: 1010 });
    const afterLink = prove(undefined, 'a1', 'magic_link', 1000);
    assert.deepEqual(nextStep(afterLink, policy, verified, noAcr), { kind: 'second-factor', accountId: 'a1', options: ['sms'] });
    assert.deepEqual(nextStep(prove(afterLink, 'a1', 'sms', 1010), policy, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['otp', 'sms', 'mfa'], acr: 'mfa', authTime: 1010 });
  });

  it('an account whose only factor is its email, signed in from that mailbox, is not asked the same mailbox again: it completes at pwd; a requested mfa cannot be met', () => {
    const policy: SignInPolicy = { ...today, mfa: 'optional', enrolled: secondFactorsOf(['email']), acrLevels: levels };
    const mfa = { acrValues: ['mfa'] };
    for (const first of ['magic_link', 'email_code'] as const) {
      const flow = prove(undefined, 'a1', first, 1000);
      assert.deepEqual(nextStep(flow, policy, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['otp'], acr: 'pwd', authTime: 1000 }, first);
      assert.deepEqual(nextStep(flow, policy, verified, mfa), { kind: 'second-factor', accountId: 'a1', options: [], level: 'mfa' }, `${first}: no option, so the client hears unmet`);
      // Recovery codes stand in for the email factor, which has nothing to add here: not offered either.
      const withCodes = { ...policy, enrolled: secondFactorsOf(['email', 'recovery']) };
      assert.equal(nextStep(flow, withCodes, verified, noAcr).kind, 'complete', `${first} with recovery codes`);
      // Another factor is still asked for, and only it.
      const withSms = { ...policy, enrolled: secondFactorsOf(['email', 'sms', 'recovery']) };
      assert.deepEqual(nextStep(flow, withSms, verified, noAcr), { kind: 'second-factor', accountId: 'a1', options: ['sms', 'recovery_code'] }, `${first} with sms`);
    }
    // After a password the email factor is asked for, and reaches mfa.
    const afterPassword = prove(undefined, 'a1', 'password', 1000);
    assert.deepEqual(nextStep(afterPassword, policy, verified, noAcr), { kind: 'second-factor', accountId: 'a1', options: ['email_otp'] });
    assert.deepEqual(nextStep(prove(afterPassword, 'a1', 'email_otp', 1010), policy, verified, mfa), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp', 'mfa'], acr: 'mfa', authTime: 1010 });
  });

  it('a password with an emailed code is not mfa: email is not a second factor', () => {
    const flow = prove(prove(undefined, 'a1', 'password', 1000), 'a1', 'email_code', 1060);
    assert.deepEqual(nextStep(flow, today, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp'], authTime: 1060 });
  });

  it('a factor for another account starts the flow over: the earlier password is not claimed', () => {
    const flow = prove(prove(undefined, 'a1', 'password', 1000), 'a2', 'email_code', 1060);
    assert.deepEqual(flow, { accountId: 'a2', proven: [{ factor: 'email_code', at: 1060 }] });
    assert.deepEqual(nextStep(flow, today, verified, noAcr), { kind: 'complete', accountId: 'a2', amr: ['otp'], authTime: 1060 });
  });

  it('amr lists every factor of the sign-in: a password then a magic link gives pwd and otp', () => {
    const flow = prove(prove(undefined, 'a1', 'password', 1000), 'a1', 'magic_link', 1060);
    assert.deepEqual(nextStep(flow, today, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp'], authTime: 1060 });
  });

  it('amr names each method once, and never claims mfa for a password and a mailbox', () => {
    const flow = prove(prove(prove(undefined, 'a1', 'password', 1000), 'a1', 'email_code', 1030), 'a1', 'magic_link', 1060);
    assert.deepEqual(nextStep(flow, today, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp'], authTime: 1060 });
  });

  it('optional MFA with nothing enrolled completes after one factor; with a second factor enrolled it asks for it', () => {
    const flow = prove(undefined, 'a1', 'password', 1000);
    assert.equal(nextStep(flow, { ...today, mfa: 'optional' }, verified, noAcr).kind, 'complete');
    assert.deepEqual(nextStep(flow, { ...today, mfa: 'optional', enrolled: ['totp'] }, verified, noAcr), { kind: 'second-factor', accountId: 'a1', options: ['totp'] });
  });

  it('required MFA asks for a second factor (none enrolled: enrol one); phishing-resistant offers only webauthn and passkeys', () => {
    const flow = prove(undefined, 'a1', 'password', 1000);
    assert.deepEqual(nextStep(flow, { ...today, mfa: 'required' }, verified, noAcr), { kind: 'second-factor', accountId: 'a1', options: [] });
    assert.deepEqual(
      nextStep(flow, { ...today, mfa: 'phishing-resistant', enrolled: ['totp', 'webauthn'] }, verified, noAcr),
      { kind: 'second-factor', accountId: 'a1', options: ['webauthn'] },
    );
  });

  it('claims the strongest offered level reached as acr: pwd for one factor, mfa with a second', () => {
    const policy: SignInPolicy = { ...today, acrLevels: levels };
    for (const factor of ['password', 'email_code', 'magic_link'] as const) {
      const step = nextStep(prove(undefined, 'a1', factor, 1000), policy, verified, noAcr);
      assert.equal(step.kind === 'complete' && step.acr, 'pwd', factor);
    }
    const withTotp = prove(prove(undefined, 'a1', 'password', 1000), 'a1', 'totp', 1030);
    assert.deepEqual(nextStep(withTotp, policy, verified, noAcr), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp', 'mfa'], acr: 'mfa', authTime: 1030 });
    const emailed = prove(prove(undefined, 'a1', 'password', 1000), 'a1', 'email_code', 1030);
    assert.equal((nextStep(emailed, policy, verified, noAcr) as { acr?: string }).acr, 'pwd', 'a password and a mailbox are not mfa');
    // Only offered levels are claimed.
    assert.equal('acr' in nextStep(prove(undefined, 'a1', 'password', 1000), { ...policy, acrLevels: ['mfa', 'phr'] }, verified, noAcr), false);
    assert.equal((nextStep(withTotp, { ...policy, acrLevels: ['pwd'] }, verified, noAcr) as { acr?: string }).acr, 'pwd');
  });

  it('acr_values: the weakest offered level listed is required; values not offered are ignored', () => {
    assert.equal(requiredLevel(['mfa'], levels), 'mfa');
    assert.equal(requiredLevel(['phr', 'mfa'], levels), 'mfa');
    assert.equal(requiredLevel(['mfa', 'pwd'], levels), 'pwd');
    assert.equal(requiredLevel(['urn:other', 'phr'], levels), 'phr');
    assert.equal(requiredLevel(['urn:other', 'constructor'], levels), undefined);
    assert.equal(requiredLevel(['mfa'], ['pwd']), undefined, 'not offered: not required');
    assert.equal(satisfies('mfa', 'pwd'), true);
    assert.equal(satisfies('mfa', 'mfa'), true);
    assert.equal(satisfies('pwd', 'mfa'), false);
    assert.equal(satisfies(undefined, 'pwd'), false);
    assert.equal(satisfies('constructor', 'pwd'), false);
    assert.equal(attainable('mfa'), true);
    assert.equal(attainable('phr'), true, 'security keys and passkeys reach phr');
    assert.equal(levelReached([{ factor: 'passkey', at: 1 }], levels), 'phr');
  });

  it('a requested mfa asks for a second factor even when the mfa policy would not; none enrolled: enrol one', () => {
    const afterPassword = prove(undefined, 'a1', 'password', 1000);
    const mfa = { acrValues: ['mfa'] };
    for (const policy of [{ ...today, acrLevels: levels }, { ...today, mfa: 'optional' as const, acrLevels: levels }]) {
      assert.deepEqual(nextStep(afterPassword, { ...policy, enrolled: ['totp'] }, verified, mfa), { kind: 'second-factor', accountId: 'a1', options: ['totp'], level: 'mfa' });
      assert.deepEqual(nextStep(afterPassword, policy, verified, mfa), { kind: 'second-factor', accountId: 'a1', options: [], level: 'mfa' });
    }
    const policy: SignInPolicy = { ...today, acrLevels: levels, enrolled: ['totp'] };
    assert.deepEqual(nextStep(prove(afterPassword, 'a1', 'totp', 1030), policy, verified, mfa), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'otp', 'mfa'], acr: 'mfa', authTime: 1030 });
    // An emailed code does not reach mfa.
    assert.equal(nextStep(prove(afterPassword, 'a1', 'email_code', 1030), policy, verified, mfa).kind, 'second-factor');
    // pwd is met by the password; phr by no factor this account has (TOTP is not phishing-resistant): no option.
    assert.equal(nextStep(afterPassword, policy, verified, { acrValues: ['pwd'] }).kind, 'complete');
    assert.deepEqual(nextStep(prove(afterPassword, 'a1', 'totp', 1030), policy, verified, { acrValues: ['phr'] }), { kind: 'second-factor', accountId: 'a1', options: [], level: 'phr' });
  });

  it('a security key after the password reaches phr with amr pwd, hwk and mfa; a requested phr offers only it', () => {
    const afterPassword = prove(undefined, 'a1', 'password', 1000);
    const policy: SignInPolicy = { ...today, mfa: 'optional', acrLevels: levels, enrolled: ['webauthn', 'totp', 'recovery_code'] };
    assert.deepEqual(nextStep(afterPassword, policy, verified, { acrValues: ['phr'] }), { kind: 'second-factor', accountId: 'a1', options: ['webauthn'], level: 'phr' });
    assert.deepEqual(nextStep(prove(afterPassword, 'a1', 'webauthn', 1030), policy, verified, { acrValues: ['phr'] }), { kind: 'complete', accountId: 'a1', amr: ['pwd', 'hwk', 'mfa'], acr: 'phr', authTime: 1030 });
    assert.equal(nextStep(prove(afterPassword, 'a1', 'totp', 1030), policy, verified, { acrValues: ['phr'] }).kind, 'second-factor', 'TOTP does not reach phr');
  });

  it('a passkey answers the mfa policy by itself: an account with enrolled factors is not asked for another', () => {
    const passkey = prove(undefined, 'a1', 'passkey', 1000);
    for (const mfa of ['optional', 'required', 'phishing-resistant'] as const) {
      const step = nextStep(passkey, { ...today, mfa, acrLevels: levels, enrolled: ['webauthn', 'totp'] }, verified, { acrValues: ['phr'] });
      assert.deepEqual(step, { kind: 'complete', accountId: 'a1', amr: ['swk', 'mfa'], acr: 'phr', authTime: 1000 }, mfa);
    }
  });

  it('a session stepping up is read back from its amr: the step-up lists its methods again', () => {
    assert.deepEqual(flowOfSession('a1', ['pwd'], 1000), { accountId: 'a1', proven: [{ factor: 'password', at: 1000 }] });
    for (const amr of [['pwd'], ['otp'], ['pwd', 'otp'], ['pwd', 'otp', 'mfa'], ['otp', 'mfa'], ['pwd', 'sms', 'mfa'], ['otp', 'sms', 'mfa'], ['pwd', 'otp', 'sms', 'mfa'], ['pwd', 'hwk', 'mfa'], ['swk', 'mfa'], ['pwd', 'otp', 'hwk', 'mfa'], ['otp', 'hwk', 'mfa']]) {
      const flow = flowOfSession('a1', amr, 1000);
      const step = nextStep(flow as Parameters<typeof nextStep>[0], { ...today, acrLevels: levels }, verified, noAcr);
      assert.deepEqual(step.kind === 'complete' && step.amr, amr, amr.join(' '));
    }
    assert.deepEqual(flowOfSession('a1', ['pwd', 'sms', 'mfa'], 1000).proven.map((p) => p.factor), ['password', 'sms'], 'sms is read back as the SMS factor');
    assert.deepEqual(flowOfSession('a1', ['otp', 'sms', 'mfa'], 1000).proven.map((p) => p.factor), ['email_code', 'sms'], 'beside sms, a lone otp is the emailed first factor');
    assert.deepEqual(flowOfSession('a1', ['pwd', 'hwk', 'mfa'], 1000).proven.map((p) => p.factor), ['password', 'webauthn']);
    assert.deepEqual(flowOfSession('a1', ['swk', 'mfa'], 1000).proven.map((p) => p.factor), ['passkey']);
    assert.deepEqual(flowOfSession('a1', ['kba', 'sc'], 1000).proven, [], 'methods no factor here yields are dropped');
  });

  it('reads back only well-formed records', () => {
    const flow = prove(undefined, 'a1', 'password', 1000);
    assert.deepEqual(parseFlow(JSON.parse(JSON.stringify(flow))), flow);
    assert.equal(parseFlow(undefined), undefined);
    assert.equal(parseFlow({ accountId: 'a1', proven: [{ factor: 'toString', at: 1 }] }), undefined);
    assert.equal(parseFlow({ accountId: 'a1', proven: [{ factor: 'password', at: '1' }] }), undefined);
    assert.equal(parseFlow({ proven: [] }), undefined);
  });
});
