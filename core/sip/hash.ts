/**
 * A fast 64-bit string hash (two FNV-1a lanes) for stateless Via branches and To tags:
 * values that must be equal for a retransmission and differ between transactions. Not a
 * cryptographic hash; collisions only matter within one Call-ID's transactions.
 * @module
 */

/** 16 lower-case hex digits hashing `text`. */
export function hash64(text: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return hex8(a) + hex8(b ^ (a >>> 7));
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}
