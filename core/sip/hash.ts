/**
 * A fast 64-bit string hash (two FNV-1a lanes) for stateless Via branches and To tags:
 * values that must be equal for a retransmission and differ between transactions. Not a
 * cryptographic hash; collisions only matter within one Call-ID's transactions.
 * @module
 */

/** 16 lower-case hex digits hashing `text`. */
export function hash64(text: string): string {
  start(text.length);
  feed(text);
  return digest();
}

/**
 * `hash64(\`${a}|${b}|${n}\`)` for a non-negative integer `n` (a port), without making that
 * string: a hash of a concatenation reads a flattened copy of it, and `String(n)` is a runtime
 * call whenever V8's number-string cache misses -- both per message for the stateless branch.
 */
export function hash64Joined(a: string, b: string, n: number): string {
  let digits = 1;
  for (let rest = n; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  start(a.length + b.length + digits + 2);
  feed(a);
  feed("|");
  feed(b);
  feed("|");
  for (let unit = 10 ** (digits - 1); unit >= 1; unit /= 10) {
    feedCode(48 + (Math.floor(n / unit) % 10));
  }
  return digest();
}

// The two lanes, module state rather than an object per hash (the functions never re-enter).
let laneA = 0;
let laneB = 0;

function start(length: number): void {
  laneA = 0x811c9dc5;
  laneB = 0x01000193 ^ length;
}

function feed(text: string): void {
  let a = laneA;
  let b = laneB;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  laneA = a;
  laneB = b;
}

function feedCode(c: number): void {
  laneA = Math.imul(laneA ^ c, 0x01000193);
  const b = Math.imul(laneB ^ c, 0x5bd1e995);
  laneB = b ^ (b >>> 15);
}

function digest(): string {
  const a = laneA;
  // One string from 16 character codes, not two `toString(16).padStart()` and a concatenation.
  const c = laneB ^ (a >>> 7);
  return String.fromCharCode(
    HEX[(a >>> 28) & 15],
    HEX[(a >>> 24) & 15],
    HEX[(a >>> 20) & 15],
    HEX[(a >>> 16) & 15],
    HEX[(a >>> 12) & 15],
    HEX[(a >>> 8) & 15],
    HEX[(a >>> 4) & 15],
    HEX[a & 15],
    HEX[(c >>> 28) & 15],
    HEX[(c >>> 24) & 15],
    HEX[(c >>> 20) & 15],
    HEX[(c >>> 16) & 15],
    HEX[(c >>> 12) & 15],
    HEX[(c >>> 8) & 15],
    HEX[(c >>> 4) & 15],
    HEX[c & 15],
  );
}

/** Character codes of the lower-case hex digits. */
const HEX = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102];
