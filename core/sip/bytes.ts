/**
 * Byte arrays for the hot path. `new Uint8Array(n)` gives every message its own zero-filled
 * ArrayBuffer, which costs about 2.5 µs in Deno here (measured 2026-11-27); small arrays are
 * carved out of a shared 8 KiB slab instead, as node's `Buffer.allocUnsafe` does from its pool
 * but without a Buffer object per array (measured: Buffer's pool and its object were ~4 % of
 * the per-message path). A slab is not reused: it is freed when the last array carved from it
 * is, so 8 KiB bounds what one long-queued message keeps alive. Only for arrays that are
 * filled completely before anyone reads them.
 * @module
 */

const SLAB_SIZE = 8192;
/** Larger arrays get their own buffer (as with node's pool: more than half a slab). */
const MAX_CARVED = SLAB_SIZE >>> 1;

let slab = new ArrayBuffer(SLAB_SIZE);
let used = 0;

/** An uninitialised byte array of `size` (every byte must be written before use). */
export function allocBytes(size: number): Uint8Array {
  if (size > MAX_CARVED) return new Uint8Array(size);
  if (used + size > SLAB_SIZE) {
    slab = new ArrayBuffer(SLAB_SIZE);
    used = 0;
  }
  const out = new Uint8Array(slab, used, size);
  used = (used + size + 7) & ~7; // 8-byte aligned, as node's pool
  return out;
}
