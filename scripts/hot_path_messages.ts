/**
 * The messages the hot-path benchmark forwards (scripts/bench_hot_path.ts): sipload's OPTIONS and
 * its 200 OK.
 * @module
 */
const encoder = new TextEncoder();

/** An OPTIONS as sipload sends it. */
export const OPTIONS_REQUEST: Uint8Array = encoder.encode(
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
/** Its 200 OK as it comes back to sipedge (our Via on top, `i` naming the client connection). */
export const OPTIONS_RESPONSE: Uint8Array = encoder.encode(
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
