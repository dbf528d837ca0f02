import net from 'node:net';
import { AppError } from '../errors.ts';

/**
 * Server-side request forgery: where a webhook may not be delivered unless private networks are
 * allowed (WEBHOOK_ALLOW_PRIVATE_NETWORKS). Loopback, private, carrier-grade NAT, link-local (the
 * cloud metadata service at 169.254.169.254 among them), unique-local, multicast, reserved and
 * documentation ranges, and NAT64 (which can reach any IPv4 address). IPv4-mapped IPv6 addresses
 * are checked against the IPv4 rules (BlockList does that itself).
 */
const blocked = new net.BlockList();
for (const [address, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(address, prefix, 'ipv4');
for (const [address, prefix] of [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001:db8::', 32], ['2002::', 16],
  ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) blocked.addSubnet(address, prefix, 'ipv6');

/** True for an address a webhook must not reach by default (an IP literal; anything else is refused too). */
export function isForbiddenAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 0) return true;
  return blocked.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** The URL's host as an IP literal (brackets of IPv6 removed), or undefined for a host name. */
export function literalAddress(url: URL): string | undefined {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return net.isIP(host) ? host : undefined;
}

/**
 * Checks a webhook URL at registration: http or https, no credentials or fragment, and (unless
 * private networks are allowed) no literal address in a forbidden range. Host names are checked
 * again at every send, against what they resolve to then.
 */
export function checkWebhookUrl(value: string, allowPrivateNetworks: boolean): string {
  const bad = (why: string) => new AppError('IDENT_VALIDATION', `body.url: ${why}`);
  if (!URL.canParse(value)) throw bad('must be an absolute http:// or https:// URL');
  const url = new URL(value);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad('must be an absolute http:// or https:// URL');
  if (url.username || url.password) throw bad('must not contain credentials');
  if (url.hash) throw bad('must not contain a fragment');
  const literal = literalAddress(url);
  if (literal && !allowPrivateNetworks && isForbiddenAddress(literal)) {
    throw bad('a loopback, private, link-local or otherwise reserved address is not allowed (WEBHOOK_ALLOW_PRIVATE_NETWORKS)');
  }
  return url.toString();
}
