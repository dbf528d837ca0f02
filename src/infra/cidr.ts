import net from 'node:net';

/** One allowed network: an address and a prefix length (CIDR notation, 10.0.0.0/8 or fd00::/8). */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/**
 * Parses a comma-separated list of IPv4/IPv6 CIDRs. A bare address is a host (/32, /128). Throws
 * an Error naming the first entry that is not one, for the settings check at boot.
 */
export function parseCidrs(list: string): Cidr[] {
  const entries = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (entries.length === 0) throw new Error('must name at least one network (such as 127.0.0.0/8)');
  return entries.map((entry) => {
    const [address = '', prefixText, ...rest] = entry.split('/');
    const version = net.isIP(address);
    if (version === 0 || rest.length > 0) throw new Error(`${JSON.stringify(entry.slice(0, 60))} is not an IPv4 or IPv6 CIDR (such as 10.0.0.0/8 or fd00::/8)`);
    const max = version === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`${JSON.stringify(entry.slice(0, 60))}: the prefix length must be 0 to ${max}`);
    return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
  });
}

/**
 * Whether an address (a socket's remote address) is inside one of the networks. IPv4-mapped IPv6
 * addresses (::ffff:127.0.0.1, what a dual-stack socket reports) match the IPv4 networks.
 */
export function cidrMatcher(cidrs: readonly Cidr[]): (address: string | undefined) => boolean {
  const list = new net.BlockList();
  for (const c of cidrs) list.addSubnet(c.address, c.prefix, c.family);
  return (address) => {
    if (!address) return false;
    const version = net.isIP(address);
    if (version === 0) return false;
    return list.check(address, version === 4 ? 'ipv4' : 'ipv6');
  };
}
