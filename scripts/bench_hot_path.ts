/**
 * Micro-benchmark of the per-message hot path without sockets: frame → parse → route → edit,
 * for a typical OPTIONS request and its 200 response. `deno bench scripts/bench_hot_path.ts`.
 * @module
 */
import { StreamFramer } from "../core/sip/stream_framer.ts";
import { forwardRequest } from "../core/proxy/forward_request.ts";
import { forwardResponse } from "../core/proxy/forward_response.ts";
import type { MessageSource, ProxyHost } from "../core/proxy/proxy_host.ts";
import { parseDestination } from "../core/transport/destination.ts";

const encoder = new TextEncoder();
const request = encoder.encode(
  "OPTIONS sip:uas@127.0.0.1:5070 SIP/2.0\r\n" +
    "Via: SIP/2.0/TCP 127.0.0.1:40000;rport;branch=z9hG4bK-0000000000000001\r\n" +
    "Max-Forwards: 70\r\n" +
    "From: <sip:uac@127.0.0.1:40000>;tag=sipload-1\r\n" +
    "To: <sip:uas@127.0.0.1:5070>\r\n" +
    "Call-ID: 0000000000000001.0.1234@sipload\r\n" +
    "CSeq: 1 OPTIONS\r\n" +
    "Contact: <sip:uac@127.0.0.1:40000;transport=tcp>\r\n" +
    "User-Agent: sipload\r\n" +
    "Content-Length: 0\r\n\r\n",
);
const response = encoder.encode(
  "SIP/2.0 200 OK\r\n" +
    "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK0123456789abcdef;i=256\r\n" +
    "Via: SIP/2.0/TCP 127.0.0.1:40000;rport=40000;branch=z9hG4bK-0000000000000001;received=127.0.0.1\r\n" +
    "From: <sip:uac@127.0.0.1:40000>;tag=sipload-1\r\n" +
    "To: <sip:uas@127.0.0.1:5070>;tag=sipload-uas\r\n" +
    "Call-ID: 0000000000000001.0.1234@sipload\r\n" +
    "CSeq: 1 OPTIONS\r\n" +
    "Contact: <sip:uas@127.0.0.1:5070>\r\n" +
    "Content-Length: 0\r\n\r\n",
);

let sent = 0;
const destination = parseDestination("sip:127.0.0.1:5070;transport=tcp");
const host: ProxyHost = {
  routers: [{ route: () => ({ destination }) }],
  flows: { register: "outbound", record_route: true },
  checkFlowToken: () => ({ ok: false, why: "invalid" }),
  datagramMtu: () => undefined,
  isLocal: (h, p) => h === "127.0.0.1" && (p === 5060 || p === 0),
  advertised: () => ({ host: "127.0.0.1", port: 5060 }),
  viaName: () => "TCP",
  transportForVia: () => "tcp",
  sendTo: (_d, bytes) => void (sent += bytes.length),
  sendOnConnection: (_id, bytes) => void (sent += bytes.length),
  count: () => {},
};
const source: MessageSource = {
  connectionId: 256,
  transport: "tcp",
  hostname: "127.0.0.1",
  port: 40000,
  reply: () => true,
  flowToken: () => undefined,
};
const framer = new StreamFramer({ maxMessageSize: 65535 });

Deno.bench("frame + forward request", () => {
  framer.feed(request, (frame) => {
    if (frame.type === "message") forwardRequest(host, source, frame);
  });
});

Deno.bench("frame + forward response", () => {
  framer.feed(response, (frame) => {
    if (frame.type === "message") forwardResponse(host, frame);
  });
});
