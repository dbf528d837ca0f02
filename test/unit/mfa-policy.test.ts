import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { levelOfPolicy, MFA_POLICIES, mfaPolicyFor, removalBreaksPolicy } from '../../src/domain/authn/mfa-policy.ts';

describe('MFA policies', () => {
  it('a sign-in follows the stricter of the deployment and the client: a client can raise it, never lower it', () => {
    assert.equal(mfaPolicyFor('optional', { mfa_policy: 'required' }), 'required');
    assert.equal(mfaPolicyFor('required', { mfa_policy: 'off' }), 'required');
    assert.equal(mfaPolicyFor('required', { mfa_policy: 'phishing-resistant' }), 'phishing-resistant');
    assert.equal(mfaPolicyFor('phishing-resistant', { mfa_policy: 'optional' }), 'phishing-resistant');
    assert.equal(mfaPolicyFor('off', { mfa_policy: 'optional' }), 'optional');
    assert.equal(mfaPolicyFor('optional', {}), 'optional');
    assert.equal(mfaPolicyFor('optional', { mfa_policy: 'bogus' }), 'optional', 'an unknown value changes nothing');
    for (const deployment of MFA_POLICIES) {
      for (const client of MFA_POLICIES) {
        const effective = mfaPolicyFor(deployment, { mfa_policy: client });
        assert.equal(MFA_POLICIES.indexOf(effective), Math.max(MFA_POLICIES.indexOf(deployment), MFA_POLICIES.indexOf(client)));
      }
    }
  });

  it('the level a policy alone asks every sign-in for', () => {
    assert.deepEqual(MFA_POLICIES.map(levelOfPolicy), [undefined, undefined, 'mfa', 'phr']);
  });

  it('required keeps the last second factor; recovery codes neither count nor are kept', () => {
    assert.equal(removalBreaksPolicy('required', ['totp', 'recovery'], ['recovery']), true);
    assert.equal(removalBreaksPolicy('required', ['totp'], []), true);
    assert.equal(removalBreaksPolicy('required', ['totp', 'webauthn'], ['webauthn']), false, 'one of two may go');
    assert.equal(removalBreaksPolicy('required', ['totp', 'recovery'], ['totp']), false, 'recovery codes may go');
    assert.equal(removalBreaksPolicy('required', ['recovery'], []), false, 'nothing that counts was there');
    assert.equal(removalBreaksPolicy('optional', ['totp'], []), false);
    assert.equal(removalBreaksPolicy('off', ['totp'], []), false);
  });

  it('phishing-resistant also keeps the last WebAuthn credential', () => {
    assert.equal(removalBreaksPolicy('phishing-resistant', ['webauthn', 'totp'], ['totp']), true);
    assert.equal(removalBreaksPolicy('phishing-resistant', ['webauthn', 'webauthn'], ['webauthn']), false);
    assert.equal(removalBreaksPolicy('phishing-resistant', ['webauthn', 'totp'], ['webauthn']), false);
    assert.equal(removalBreaksPolicy('phishing-resistant', ['totp'], []), true, 'the last second factor of any kind');
  });
});
