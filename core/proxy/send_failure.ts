/**
 * A message sipedge forwarded that could not be sent: a request's sender gets the failure
 * response (408 for timeouts, 430 for a flow that is gone, else 503; with a Reason header,
 * never for an ACK); a response is dropped and logged. The failure response is built from the
 * forwarded request -- our Via on top, with the `i=` of the connection the request came in
 * on -- and goes back through {@link forwardResponse}, like a response from the next hop. So it
 * reaches the sender from whichever worker found the failure: the one that sent the request or
 * the one a request was handed to.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type FailureReason, failureReply, reasonHeader } from "../policy/failure.ts";
import { parseMessageHead } from "../sip/parse_head.ts";
import { buildReply } from "../sip/reply.ts";
import { forwardResponse } from "./forward_response.ts";
import type { ProxyHost } from "./proxy_host.ts";

const log = getLogger(["sipedge", "proxy"]);

/** Answers the failure to send `bytes` (a message sipedge forwarded). */
export function answerSendFailure(host: ProxyHost, bytes: Uint8Array, reason: FailureReason) {
  host.count("send_failed");
  const head = parseMessageHead(bytes);
  if (!head.isRequest) {
    log.info("response {status} not sent: {reason}", { status: head.status, reason });
    return;
  }
  if (reason === "flow_failed") host.count("flow_failed");
  if (head.method === "ACK") return; // never answered (RFC 3261 §17.2.1)
  const reply = failureReply(reason);
  const bytesOut = buildReply(head, reply.status, reply.reason, {
    headers: [reasonHeader(reason)],
  });
  forwardResponse(host, { head: parseMessageHead(bytesOut), bytes: bytesOut }, true);
}
