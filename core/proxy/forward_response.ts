/**
 * Stateless forwarding of responses (RFC 3261 §16.7 step 3, §16.11, §18.2.2): remove our
 * Via, then send to the next Via -- over the connection the request came in on (its id is in
 * our Via's `i` parameter) while it is open, else to received/rport/sent-by.
 * @module
 */
import { findHeader, type SipHead } from "../sip/head.ts";
import { firstCommaValue, parseVia, splitCommaValues } from "../sip/header_values.ts";
import { addContentLength, MessageEdit } from "../sip/message_edit.ts";
import type { ProxyHost } from "./proxy_host.ts";
import { getLogger } from "@logtape/logtape";

const log = getLogger(["sipedge", "proxy"]);

/** A response ready to be processed: its head and whole bytes. */
export interface IncomingResponse {
  head: SipHead;
  bytes: Uint8Array;
}

/**
 * Processes one response. Responses that cannot be forwarded are dropped and counted. `local`:
 * a response sipedge made itself (a failure answer built from the request it forwarded),
 * counted as a local reply rather than as a response read and forwarded.
 */
export function forwardResponse(host: ProxyHost, response: IncomingResponse, local = false) {
  host.count(local ? "local_replies" : "responses_in");
  const { head } = response;
  const drop = (why: string) => {
    host.count("responses_dropped");
    log.debug("response dropped: {why}", { why, status: head.status });
  };
  if (head.error !== undefined) return drop(head.error);
  const viaField = findHeader(head, "via");
  if (viaField === undefined) return drop("no Via");
  const values = splitCommaValues(head.text, viaField.valueStart, viaField.valueEnd, 2);
  const ours = values[0] && parseVia(head.text.slice(values[0].start, values[0].end));
  if (ours === undefined) return drop("malformed Via");
  const oursTransport = host.transportForVia(ours.transport);
  if (oursTransport === undefined || !host.isLocal(ours.host, ours.port, oursTransport)) {
    return drop("top Via is not ours");
  }

  // The next Via: the rest of this line, or the next Via line.
  let nextText: string | undefined;
  const edit = new MessageEdit(response.bytes);
  if (values.length > 1) {
    edit.remove(values[0].start, values[1].start);
    nextText = head.text.slice(values[1].start, values[1].end);
  } else {
    edit.remove(viaField.start, viaField.end);
    for (const field of head.headers) {
      if (field.name !== "via" || field === viaField) continue;
      const next = firstCommaValue(head.text, field.valueStart, field.valueEnd);
      if (next !== undefined) nextText = head.text.slice(next.start, next.end);
      break;
    }
  }
  if (nextText === undefined) return drop("no Via after ours");
  const next = parseVia(nextText);
  if (next === undefined) return drop("malformed next Via");
  addContentLength(edit, head, response.bytes.length);
  const bytes = edit.build();

  // Where the next Via says, when the connection the request came in on is gone.
  const transport = host.transportForVia(next.transport);
  const received = next.params.get("received");
  const rport = Number(next.params.get("rport"));
  const fallback = transport === undefined ? undefined : {
    transport,
    host: withoutBrackets(received || next.host),
    port: Number.isInteger(rport) && rport > 0 ? rport : next.port,
  };
  const connectionId = Number(ours.params.get("i"));
  if (Number.isInteger(connectionId) && connectionId > 0) {
    host.sendOnConnection(connectionId, bytes, fallback, local);
  } else if (fallback !== undefined) {
    host.sendTo(fallback, bytes, local);
  } else {
    return drop(`no ${next.transport} transport for the next Via`);
  }
  if (!local) host.count("responses_forwarded");
}

/** An IPv6 reference without its brackets; any other host as it is. */
function withoutBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}
