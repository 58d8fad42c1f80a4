/**
 * Micro-benchmark of the per-message hot path without sockets: frame → parse → route → edit,
 * for a typical OPTIONS request and its 200 response, the response both ways a worker can forward
 * it (parsed, and by its bytes when its top Via is ours). `deno bench scripts/bench_hot_path.ts`.
 * @module
 */
import { StreamFramer } from "../core/sip/stream_framer.ts";
import { forwardRequest } from "../core/proxy/forward_request.ts";
import { forwardResponse } from "../core/proxy/forward_response.ts";
import { findOwnVia, ownViaPrefix, withoutOwnVia } from "../core/proxy/own_via_response.ts";
import { ownViaSentBy } from "../core/proxy/forward_request.ts";
import { OPTIONS_REQUEST, OPTIONS_RESPONSE } from "./hot_path_messages.ts";
import { HOT_PATH_SOURCE, hotPathHost } from "./hot_path_host.ts";

const sent = { bytes: 0 };
const host = hotPathHost(sent);
const source = HOT_PATH_SOURCE;
const framer = new StreamFramer({ maxMessageSize: 65535 });

Deno.bench("frame + forward request", () => {
  framer.feed(OPTIONS_REQUEST, (frame) => {
    if (frame.type === "message") forwardRequest(host, source, frame);
  });
});

Deno.bench("frame + forward response (parsed: forwardResponse)", { group: "response" }, () => {
  framer.feed(OPTIONS_RESPONSE, (frame) => {
    if (frame.type === "message") forwardResponse(host, frame);
  });
});

// What a worker does with the same response: its top Via is ours, so it is cut from the bytes.
const ownVias = [ownViaPrefix(ownViaSentBy("TCP", { host: "127.0.0.1", port: 5060 }))];
Deno.bench("frame + forward response (by its bytes)", { group: "response" }, () => {
  framer.feed(OPTIONS_RESPONSE, (frame) => {
    if (frame.type !== "message") return;
    const cut = findOwnVia(frame.bytes, ownVias);
    if (cut === undefined) throw new Error("the sample response is not cut");
    host.sendOnConnection(cut.connectionId, withoutOwnVia(frame.bytes, cut));
  });
});
