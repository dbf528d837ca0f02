import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ipLimitKey } from '../../src/http/middleware/rate-limit.ts';

// Per-IP limits count an IPv6 client by its /64 (a host picks addresses in its /64 at will).

describe('ipLimitKey', () => {
  it('groups IPv6 addresses by their /64, whatever their spelling', () => {
    const key = ipLimitKey('2001:db8:1:2::1');
    assert.equal(key, '2001:db8:1:2::/64');
    for (const ip of ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0db8:0001:0002:0:0:0:abcd', '2001:DB8:1:2::dead:beef', '2001:db8:1:2::7%eth0']) {
      assert.equal(ipLimitKey(ip), key, ip);
    }
  });

  it('tells different /64s apart', () => {
    assert.notEqual(ipLimitKey('2001:db8:1:2::1'), ipLimitKey('2001:db8:1:3::1'));
    assert.equal(ipLimitKey('::1'), '0:0:0:0::/64');
    assert.equal(ipLimitKey('2001:db8::'), '2001:db8:0:0::/64');
  });

  it('keeps IPv4 addresses one by one, IPv4-mapped IPv6 as the IPv4 address', () => {
    assert.equal(ipLimitKey('203.0.113.7'), '203.0.113.7');
    assert.notEqual(ipLimitKey('203.0.113.7'), ipLimitKey('203.0.113.8'));
    assert.equal(ipLimitKey('::ffff:203.0.113.7'), '203.0.113.7');
  });

  it('passes anything else through unchanged', () => {
    assert.equal(ipLimitKey(''), '');
    assert.equal(ipLimitKey('not-an-ip'), 'not-an-ip');
  });
});
