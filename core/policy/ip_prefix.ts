/**
 * IP addresses as four 32-bit words (IPv6 order; IPv4 as the IPv4-mapped `::ffff:a.b.c.d`, so
 * that one comparison serves both families), prefixes of them, and CIDR ranges: what the flood
 * guard groups sources by, matches `trusted` against, and names bans with.
 * @module
 */

/** An address or a prefix: four words (`Int32`, big-endian order) and a length in bits. */
export interface IpPrefix {
  words: [number, number, number, number];
  /** 0..128, counted on the IPv6 form (an IPv4 /24 is 120). */
  bits: number;
  /** Whether it is an IPv4 (IPv4-mapped) address or range. */
  v4: boolean;
}

/** Parses a dotted IPv4 address to one unsigned word; undefined when malformed. */
function parseV4(text: string): number | undefined {
  let word = 0;
  let parts = 0;
  let value = -1;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46;
    if (c === 46) {
      if (value < 0 || parts === 4) return undefined;
      word = word * 256 + value;
      parts++;
      value = -1;
    } else if (c >= 48 && c <= 57) {
      value = value < 0 ? c - 48 : value * 10 + c - 48;
      if (value > 255) return undefined;
    } else {
      return undefined;
    }
  }
  return parts === 4 ? word : undefined;
}

/**
 * Parses an IPv4 or IPv6 address (no brackets; a zone `%eth0` is ignored) to four words, or
 * undefined. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.9`) come out as IPv4.
 */
export function parseIp(text: string): IpPrefix | undefined {
  if (!text.includes(":")) {
    const v4 = parseV4(text);
    return v4 === undefined ? undefined : { words: [0, 0, 0xffff, v4 | 0], bits: 128, v4: true };
  }
  const zone = text.indexOf("%");
  const s = (zone < 0 ? text : text.slice(0, zone)).toLowerCase();
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseV4(item);
        if (v4 === undefined) return undefined;
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-f]{1,4}$/.test(item)) return undefined;
        out.push(parseInt(item, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const words = [0, 1, 2, 3].map((i) => (all[2 * i] << 16 | all[2 * i + 1]) | 0) as [
    number,
    number,
    number,
    number,
  ];
  const v4 = words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
  return { words, bits: 128, v4 };
}

/** The mask of word `i` for a prefix of `bits` bits. */
function maskOf(i: number, bits: number): number {
  const left = bits - 32 * i;
  if (left >= 32) return -1;
  if (left <= 0) return 0;
  return (-1 << (32 - left)) | 0;
}

/** `ip` cut to its first `bits` bits (host bits zero). */
export function toPrefix(ip: IpPrefix, bits: number): IpPrefix {
  const w = ip.words;
  return {
    words: [
      w[0] & maskOf(0, bits),
      w[1] & maskOf(1, bits),
      w[2] & maskOf(2, bits),
      w[3] &
      maskOf(3, bits),
    ],
    bits,
    v4: ip.v4,
  };
}

/** Whether `ip` is inside `range`. */
export function contains(range: IpPrefix, ip: IpPrefix): boolean {
  const w = ip.words, r = range.words, bits = range.bits;
  return (w[0] & maskOf(0, bits)) === r[0] && (w[1] & maskOf(1, bits)) === r[1] &&
    (w[2] & maskOf(2, bits)) === r[2] && (w[3] & maskOf(3, bits)) === r[3];
}

/**
 * Parses `ADDRESS` or `ADDRESS/LENGTH` (IPv4 length 0-32, IPv6 0-128) to a range; a string
 * saying what is wrong with it otherwise (for config errors that name the entry).
 */
export function parseCidr(text: string): IpPrefix | string {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(address);
  if (ip === undefined || address.includes("%")) {
    return `"${text}": not an IPv4 or IPv6 address or CIDR range (like 192.0.2.0/24 or 2001:db8::/32)`;
  }
  if (slash < 0) return ip;
  const lengthText = text.slice(slash + 1);
  const max = ip.v4 && !address.includes(":") ? 32 : 128;
  if (!/^[0-9]{1,3}$/.test(lengthText) || Number(lengthText) > max) {
    return `"${text}": prefix length must be 0 to ${max}`;
  }
  const bits = Number(lengthText) + (max === 32 ? 96 : 0);
  const range = toPrefix(ip, bits);
  if (range.words.some((w, i) => w !== ip.words[i])) {
    return `"${text}": host bits are set (did you mean ${formatPrefix(range)}?)`;
  }
  return range;
}

/**
 * The text of an address or prefix: `192.0.2.9`, `192.0.2.0/24`, `2001:db8:1:2::/64`,
 * `2001:db8::9` (a full-length prefix is written as the address).
 */
export function formatPrefix(p: IpPrefix): string {
  if (p.v4) {
    const v = p.words[3] >>> 0;
    const text = `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
    return p.bits >= 128 ? text : `${text}/${p.bits - 96}`;
  }
  const groups: number[] = [];
  for (const w of p.words) groups.push(w >>> 16 & 0xffff, w & 0xffff);
  // The longest run of zero groups (at least two) becomes "::" (RFC 5952).
  let bestAt = -1, bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestAt, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  const text = bestAt < 0
    ? hex.join(":")
    : `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLength).join(":")}`;
  return p.bits >= 128 ? text : `${text}/${p.bits}`;
}

/**
 * The group a source address counts in: an IPv4 address alone, an IPv6 address by its first
 * `ipv6Prefix` bits. Undefined when `address` is not an IP address.
 */
export function sourceGroup(address: string, ipv6Prefix: number): IpPrefix | undefined {
  const ip = parseIp(address);
  if (ip === undefined) return undefined;
  return ip.v4 ? ip : toPrefix(ip, ipv6Prefix);
}
