/**
 * Builds an edited copy of a message: byte ranges of the original are copied as they are and
 * only the edited spans are written anew, so every header the proxy does not own is forwarded
 * byte for byte and the body is never touched. One allocation for the result.
 * @module
 */
import { latin1Write } from "./latin1.ts";
import { allocBytes } from "./bytes.ts";
import type { SipHead } from "./head.ts";

interface Edit {
  start: number;
  end: number;
  text: string;
}

/** A set of non-overlapping edits on a message's bytes. */
export class MessageEdit {
  #bytes: Uint8Array;
  #edits: Edit[] = [];

  /** `bytes` is the original message (head offsets are offsets into it). */
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** Inserts latin1 `text` before offset `at`. */
  insert(at: number, text: string): this {
    this.#edits.push({ start: at, end: at, text });
    return this;
  }

  /** Replaces `[start, end)` with latin1 `text` (empty text removes). */
  replace(start: number, end: number, text: string): this {
    this.#edits.push({ start, end, text });
    return this;
  }

  /** Removes `[start, end)`. */
  remove(start: number, end: number): this {
    return this.replace(start, end, "");
  }

  /** The edited message. Edits must not overlap; inserts at one offset keep their order. */
  build(): Uint8Array {
    const edits = this.#edits;
    if (!isSorted(edits)) edits.sort((a, b) => a.start - b.start);
    let size = this.#bytes.length;
    for (const e of edits) size += e.text.length - (e.end - e.start);
    const out = allocBytes(size);
    let from = 0;
    let at = 0;
    const bytes = this.#bytes;
    for (const e of edits) {
      if (e.start < from) throw new Error("MessageEdit: overlapping edits");
      if (e.start > from) out.set(bytes.subarray(from, e.start), at);
      at += e.start - from;
      at = latin1Write(e.text, out, at);
      from = e.end;
    }
    if (from < bytes.length) out.set(bytes.subarray(from), at);
    return out;
  }
}

function isSorted(edits: Edit[]): boolean {
  for (let i = 1; i < edits.length; i++) if (edits[i].start < edits[i - 1].start) return false;
  return true;
}

/** Length of the empty line that ends a head (CRLF, or a bare LF). */
export function endOfHeadLength(head: SipHead): number {
  return head.text.endsWith("\r\n\r\n") ? 2 : 1;
}

/**
 * Adds a Content-Length to a message that has none: a datagram or a WebSocket message may omit
 * it, a stream may not (RFC 3261 §18.3, §20.14), and the next hop may be a stream. The body is
 * what follows the head in the `messageLength` bytes.
 */
export function addContentLength(edit: MessageEdit, head: SipHead, messageLength: number): void {
  if (head.contentLength >= 0) return;
  edit.insert(
    head.text.length - endOfHeadLength(head),
    `Content-Length: ${messageLength - head.text.length}\r\n`,
  );
}
