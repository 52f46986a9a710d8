import net from "node:net";

/**
 * The rate-limit key of a client address: an IPv4 address as is, an IPv6 address by its /64
 * (one host commonly holds a whole /64, so counting single IPv6 addresses would let it try
 * 2^64 times), an IPv4-mapped IPv6 address as the IPv4 address it maps.
 */
export function loginSourceOf(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return `addr:${mapped[1]}`;
  if (net.isIPv4(ip)) return `addr:${ip}`;
  if (!net.isIPv6(ip)) return `addr:${ip.slice(0, 64)}`;
  return `addr:${expandIPv6(ip).slice(0, 4).join(":")}::/64`;
}

/** The eight hextets of an IPv6 address, without leading zeros (zone id dropped). */
function expandIPv6(ip: string): string[] {
  const [head = "", tail] = ip.split("%")[0]!.split("::");
  const part = (s: string) => (s === "" ? [] : s.split(":"));
  let left = part(head);
  let right = tail === undefined ? [] : part(tail);
  // An embedded IPv4 tail (::ffff:… handled above; ::1.2.3.4 and friends) counts as two hextets.
  const toHex = (groups: string[]) =>
    groups.flatMap((g) => {
      if (!g.includes(".")) return [g];
      const [a, b, c, d] = g.split(".").map(Number) as [number, number, number, number];
      return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
    });
  left = toHex(left);
  right = toHex(right);
  const zeros = tail === undefined ? [] : Array.from({ length: 8 - left.length - right.length }, () => "0");
  return [...left, ...zeros, ...right].map((h) => parseInt(h, 16).toString(16));
}
