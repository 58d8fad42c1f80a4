/**
 * Stateless forwarding of requests (RFC 3261 §16.3-§16.6, §16.11).
 *
 * Validate -> answer what is ours to answer (OPTIONS to us, Max-Forwards 0) -> preprocess
 * Route (§16.4) -> choose the next hop (Route, then routers, then Request-URI) -> edit a copy:
 * our Via on top with a stateless branch, received/rport on the sender's Via, Max-Forwards,
 * our Route removed, Record-Route added -> send. Every header the proxy does not own is copied
 * byte for byte; the body is never touched.
 * @module
 */
import {
  findHeader,
  findHeaders,
  type HeaderField,
  headerValue,
  type SipHead,
} from "../sip/head.ts";
import {
  firstCommaValue,
  isNameAddr,
  paramSpan,
  parseCSeq,
  parseNameAddr,
  parseVia,
  splitCommaValues,
  tagOf,
  type ValueRange,
  type Via,
} from "../sip/header_values.ts";
import { addContentLength, endOfHeadLength, MessageEdit } from "../sip/message_edit.ts";
import { buildReply, LOCAL_TAG_PREFIX } from "../sip/reply.ts";
import { formatHostPort, parseSipUri, type SipUri, sipUriProblem } from "../sip/uri.ts";
import { type Destination, destinationOf } from "../transport/destination.ts";
import type { Router, RouteResult } from "../plugin/types.ts";
import { describeError, pluginOf } from "../plugin/owners.ts";
import { getLogger } from "@logtape/logtape";
import { hash64, hash64Joined } from "../sip/hash.ts";
import { digitsValue } from "../sip/token.ts";
import { looksLikeFlowToken } from "./flow_token.ts";
import type { FlowCheck, FlowSettings, MessageSource, ProxyHost } from "./proxy_host.ts";

const pluginLog = getLogger(["sipedge", "plugin"]);

/** Max-Forwards added to requests that have none (RFC 3261 §16.6 step 3). */
export const DEFAULT_MAX_FORWARDS = 70;

/** A request ready to be processed: its head and whole bytes. */
export interface IncomingRequest {
  head: SipHead;
  bytes: Uint8Array;
}

/** Processes one request read from `source`. */
export function forwardRequest(host: ProxyHost, source: MessageSource, request: IncomingRequest) {
  host.count("requests_in");
  const { head } = request;
  const isAck = head.method === "ACK";

  if (head.error !== undefined) return refuse(host, source, head, 400, head.error);
  if (head.version !== "SIP/2.0" && head.version.toUpperCase() !== "SIP/2.0") {
    return refuse(host, source, head, 505, "Version Not Supported");
  }
  const problem = checkRequiredHeaders(head);
  if (problem !== undefined) return refuse(host, source, head, 400, problem);
  const viaField = findHeader(head, "via")!; // checkRequiredHeaders: there is one
  const topViaRange = firstCommaValue(head.text, viaField.valueStart, viaField.valueEnd);
  const topViaText = topViaRange === undefined
    ? ""
    : head.text.slice(topViaRange.start, topViaRange.end);
  const topVia = parseVia(topViaText);
  if (topVia === undefined || topViaRange === undefined) {
    return refuse(host, source, head, 400, "Malformed Via header");
  }
  // The ACK for a final response sipedge made itself (a failure it answered): it ends there.
  if (isAck && tagOf(getValue(head, "to"))?.startsWith(LOCAL_TAG_PREFIX)) {
    return host.count("acks_absorbed");
  }

  // The Request-URI, checked before any routing: a scheme sipedge does not carry is refused
  // even when a route would take it; tel: URIs go to the routers.
  let uri: SipUri | undefined = parseSipUri(head.uri);
  if (uri === undefined) {
    const scheme = head.uri.slice(0, Math.max(0, head.uri.indexOf(":"))).toLowerCase();
    if (scheme === "sip" || scheme === "sips") {
      return refuse(host, source, head, 400, `Malformed Request-URI: ${sipUriProblem(head.uri)}`);
    }
    if (scheme !== "tel") return refuse(host, source, head, 416, "Unsupported URI Scheme");
  }
  // §19.1.1: header parameters are not allowed in a Request-URI (RFC 4475 escruri).
  if (uri?.hasHeaders) return refuse(host, source, head, 400, "Headers in Request-URI");

  // Max-Forwards (§16.3 step 3)
  const mfField = findHeader(head, "max-forwards");
  let maxForwards = DEFAULT_MAX_FORWARDS;
  if (mfField !== undefined) {
    const text = headerValue(head, mfField);
    maxForwards = digitsValue(text, 0, text.length, 9);
    if (maxForwards < 0) return refuse(host, source, head, 400, "Invalid Max-Forwards");
    if (maxForwards === 0) {
      if (head.method === "OPTIONS") return answer(host, source, head, 200, "OK");
      return refuse(host, source, head, 483, "Too Many Hops");
    }
  }

  // Proxy-Require (§16.3 step 6): sipedge supports no extensions that a proxy must support.
  if (findHeader(head, "proxy-require") !== undefined) {
    const tags = findHeaders(head, "proxy-require").map((f) => headerValue(head, f)).join(", ");
    return refuse(host, source, head, 420, "Bad Extension", [`Unsupported: ${tags}`]);
  }

  const edit = new MessageEdit(request.bytes);
  let routes = routeValues(head);
  const removedRoutes: RouteValue[] = [];
  /** The Request-URI as it goes out (strict routing rewrites it). */
  let requestUri = head.uri;

  // Route preprocessing (§16.4): a strict router before us put our URI in the Request-URI.
  if (
    uri !== undefined && routes.length > 0 && uri.user === "" && uri.params.has("lr") &&
    isOurs(host, uri)
  ) {
    const last = routes[routes.length - 1];
    const lastUri = parseSipUri(last.uri);
    if (lastUri !== undefined) {
      requestUri = last.uri;
      removedRoutes.push(last);
      routes = routes.slice(0, -1);
      uri = lastUri;
    }
  }
  // Remove the Route values that name us (one per Record-Route or Path we added). One with a
  // flow token (RFC 5626 §5.3) names a client's flow: a request that did not come over that
  // flow is for the client and goes over it; the client's own requests go on by their routes.
  let flow: Extract<FlowCheck, { ok: true }> | undefined;
  let flowToken: string | undefined;
  while (routes.length > 0 && routes[0].parsed !== undefined && isOurs(host, routes[0].parsed)) {
    const user = routes[0].parsed.user;
    if (user !== flowToken && looksLikeFlowToken(user)) {
      const check = host.checkFlowToken(user);
      if (!check.ok && check.why === "invalid") {
        host.count("flow_token_invalid");
        return refuse(host, source, head, 403, "Invalid Flow Token");
      }
      if (!check.ok) {
        host.count("flow_failed");
        return refuse(host, source, head, 430, "Flow Failed");
      }
      flowToken = user;
      const fromThisFlow = check.connectionId === source.connectionId &&
        (check.address === undefined ||
          (check.address.hostname === source.hostname && check.address.port === source.port));
      if (!fromThisFlow) flow = check;
    }
    removedRoutes.push(routes[0]);
    routes = routes.slice(1);
  }

  // Next hop (§16.5, §16.6 step 6-7).
  let destination: Destination | undefined;
  let recordRoute = false;
  if (flow !== undefined) {
    // Over the flow's connection, whichever worker owns it (host and port are not used).
    destination = { transport: flow.transport, host: "", port: 0 };
  } else if (routes.length > 0) {
    const next = routes[0].parsed;
    if (next === undefined) return refuse(host, source, head, 400, "Malformed Route header");
    destination = destinationOf(next);
    if (!next.params.has("lr")) {
      // Strict-routing next hop: its URI becomes the Request-URI, ours goes last in Route.
      edit.insert(head.text.length - endOfHeadLength(head), `Route: <${requestUri}>\r\n`);
      requestUri = routes[0].uri;
      removedRoutes.push(routes[0]);
    }
  } else {
    if (
      uri !== undefined && uri.user === "" && head.method === "OPTIONS" &&
      isOurs(host, uri)
    ) {
      return answer(host, source, head, 200, "OK");
    }
    const result = routeByPlugins(host, head, uri, source);
    if (result !== undefined && "reply" in result) {
      return refuse(
        host,
        source,
        head,
        result.reply.status,
        result.reply.reason,
        result.reply.headers,
      );
    }
    if (result !== undefined) {
      destination = result.destination;
      recordRoute = result.recordRoute ?? false;
    } else if (uri === undefined) {
      return refuse(host, source, head, 416, "Unsupported URI Scheme");
    } else if (isOurs(host, uri)) {
      return refuse(host, source, head, 404, "Not Found");
    } else {
      destination = destinationOf(uri);
    }
    // RFC 3261 §18.1.1: a request too large for a datagram goes over TCP (congestion control)
    // when sipedge can; else it goes as it is, counted.
    const mtu = host.datagramMtu(destination.transport);
    if (mtu !== undefined && request.bytes.length + ADDED_BYTES_ESTIMATE > mtu) {
      if (host.viaName("tcp") !== undefined) {
        host.count("udp_mtu_to_tcp");
        destination = { ...destination, transport: "tcp" };
      } else {
        host.count("udp_over_mtu");
      }
    }
  }

  removeRouteValues(edit, removedRoutes);
  addContentLength(edit, head, request.bytes.length);
  if (requestUri !== head.uri) {
    edit.replace(requestUriStart(head), requestUriStart(head) + head.uri.length, requestUri);
  }

  const outVia = host.viaName(destination.transport);
  // Sent over a transport sipedge does not listen on (tls in, tcp out): responses come back on
  // the connection the request goes out on (RFC 3261 §18.2.2), so the address it came in on
  // serves as Via sent-by.
  const outAddress = host.advertised(destination.transport) ?? host.advertised(source.transport);
  if (outVia === undefined || outAddress === undefined) {
    return refuse(host, source, head, 503, "Service Unavailable", [
      `Reason: SIP;cause=503;text="transport ${destination.transport} not enabled"`,
    ]);
  }

  // A dialog-forming request to or from a flow is record-routed with the flow's token, so that
  // in-dialog requests from the far end come back over the flow (RFC 5626 §5.3).
  let recordRouteUser = "";
  if (host.flows.record_route && isDialogForming(head)) {
    const token = flow !== undefined ? flowToken : source.flowToken(source.flowsOnly === true);
    if (token !== undefined) {
      recordRoute = true;
      recordRouteUser = token;
    }
  }

  // Max-Forwards, Path and Record-Route go in before our Via (inserts at one offset keep their
  // order), so that a request whose first header is Via keeps its Via lines together.
  if (mfField === undefined) {
    edit.insert(head.headersStart, `Max-Forwards: ${DEFAULT_MAX_FORWARDS}\r\n`);
  } else {
    edit.replace(mfField.valueStart, mfField.valueEnd, String(maxForwards - 1));
  }
  if (
    head.method === "REGISTER" && wantsFlow(host.flows.register, head, source.flowsOnly === true)
  ) {
    // RFC 5626 §5.1 / RFC 3327: our Path on top, naming the client's flow; `ob` says this
    // edge proxy does outbound.
    const pathAt = findHeader(head, "path")?.start ?? head.headersStart;
    const ours = ourUri(host, destination.transport, source.transport, source.flowToken(true)!);
    edit.insert(pathAt, `Path: <${ours};lr;ob>\r\n`);
    host.count("flows_registered");
  }
  if (recordRoute) {
    const rrAt = findHeader(head, "record-route")?.start ?? head.headersStart;
    edit.insert(
      rrAt,
      recordRouteLines(host, destination.transport, source.transport, recordRouteUser),
    );
  }

  // Our Via, on top of the others (§16.6 step 8), with a stateless branch (§16.11) and the
  // inbound connection id, so that the response goes back over the same connection.
  const branch = statelessBranch(head, topVia);
  edit.insert(
    viaField.start,
    `Via: ${ownViaSentBy(outVia, outAddress)};branch=${branch};i=${source.connectionId}\r\n`,
  );
  // received / rport on the sender's Via (§18.2.1, RFC 3581).
  addReceived(edit, topViaText, topViaRange.start, topVia, source);

  host.count("requests_forwarded");
  // Not sent: the host answers the sender (408 for timeouts, 430 for a flow, else 503).
  if (flow === undefined) return host.sendTo(destination, edit.build());
  const address = flow.address;
  host.sendOnConnection(
    flow.connectionId,
    edit.build(),
    address && { transport: flow.transport, host: address.hostname, port: address.port },
  );
}

/**
 * The start of our Via's value, `SIP/2.0/TCP host:port`: a response that comes back with it
 * (and `;branch=`) is one of ours (core/proxy/own_via_response.ts looks for it byte for byte).
 */
export function ownViaSentBy(viaName: string, address: { host: string; port: number }): string {
  return `SIP/2.0/${viaName} ${formatHostPort(address.host, address.port)}`;
}

/** What sipedge adds to a request at most, about (Via, Max-Forwards, Record-Route, Path). */
const ADDED_BYTES_ESTIMATE = 300;

/** INVITE, SUBSCRIBE and REFER outside a dialog (no To tag) create one. */
function isDialogForming(head: SipHead): boolean {
  const m = head.method;
  if (m !== "INVITE" && m !== "SUBSCRIBE" && m !== "REFER") return false;
  return tagOf(getValue(head, "to")) === undefined;
}

/**
 * Whether a REGISTER gets a Path with a flow token: with `outbound`, when the client asks for
 * RFC 5626 outbound or for Path (`Supported: outbound` or `path`, a Contact with `reg-id` or
 * `;ob`); with `all`, always.
 */
function wantsFlow(mode: FlowSettings["register"], head: SipHead, flowsOnly: boolean): boolean {
  if (mode !== "outbound" || flowsOnly) return mode !== "off";
  for (const field of head.headers) {
    if (field.name === "supported") {
      if (/(^|[\s,])(outbound|path)([\s,]|$)/i.test(headerValue(head, field))) return true;
    } else if (field.name === "contact") {
      if (/;[ \t]*(reg-id[ \t]*=|ob[ \t]*[;>]|ob$)/i.test(headerValue(head, field))) return true;
    }
  }
  return false;
}

/**
 * Our URI for `transport` (`sip:[user@]host:port;transport=...`), or for `fallback` when
 * sipedge does not listen on `transport` (the only way back in is then the inbound one).
 */
function ourUri(host: ProxyHost, transport: string, fallback: string, user = ""): string {
  const t = host.advertised(transport) !== undefined ? transport : fallback;
  const a = host.advertised(t)!;
  return `sip:${user === "" ? "" : `${user}@`}${formatHostPort(a.host, a.port)};transport=${t}`;
}

/**
 * Answers a request sipedge refuses (never an ACK: RFC 3261 §17.2.1), counted. A function of
 * the module rather than a closure made in every forwardRequest call, for a path most requests
 * never take (the allocation it might cost was not measurable: V8 may elide it).
 */
function refuse(
  host: ProxyHost,
  source: MessageSource,
  head: SipHead,
  status: number,
  reason: string,
  headers?: string[],
): void {
  host.count("requests_rejected");
  if (head.method === "ACK") return;
  host.count("local_replies");
  source.reply(buildReply(head, status, reason, { headers }));
}

function answer(
  host: ProxyHost,
  source: MessageSource,
  head: SipHead,
  status: number,
  reason: string,
) {
  host.count("local_replies");
  source.reply(buildReply(head, status, reason));
}

/** The checks of §16.3 step 1 that a stateless proxy needs to route and reply. */
function checkRequiredHeaders(head: SipHead): string | undefined {
  let via = 0, from = 0, to = 0, callId = 0, cseq = 0, maxForwards = 0, contentLength = 0;
  for (const h of head.headers) {
    switch (h.name) {
      case "via":
        via++;
        break;
      case "from":
        from++;
        break;
      case "to":
        to++;
        break;
      case "call-id":
        callId++;
        break;
      case "cseq":
        cseq++;
        break;
      case "max-forwards":
        maxForwards++;
        break;
      case "content-length":
        contentLength++;
        break;
    }
  }
  if (via === 0) return "Missing Via header";
  if (from !== 1) return from === 0 ? "Missing From header" : "Multiple From headers";
  if (to !== 1) return to === 0 ? "Missing To header" : "Multiple To headers";
  if (callId !== 1) return callId === 0 ? "Missing Call-ID header" : "Multiple Call-ID headers";
  if (cseq !== 1) return cseq === 0 ? "Missing CSeq header" : "Multiple CSeq headers";
  if (maxForwards > 1) return "Multiple Max-Forwards headers";
  if (contentLength > 1) return "Multiple Content-Length headers";
  const parsedCSeq = parseCSeq(getValue(head, "cseq"));
  if (parsedCSeq === undefined) return "Malformed CSeq header";
  if (parsedCSeq.method !== head.method) return "CSeq method does not match the request method";
  if (!isNameAddr(getValue(head, "from"))) return "Malformed From header";
  if (!isNameAddr(getValue(head, "to"))) return "Malformed To header";
  if (getValue(head, "call-id") === "") return "Empty Call-ID header";
  return undefined;
}

function getValue(head: SipHead, name: string): string {
  return headerValue(head, findHeader(head, name)!);
}

/** One Route value with where it is. */
interface RouteValue {
  field: HeaderField;
  range: ValueRange;
  /** Index of the value in its field, and every value range of that field. */
  index: number;
  all: ValueRange[];
  uri: string;
  parsed: SipUri | undefined;
}

function routeValues(head: SipHead): RouteValue[] {
  const out: RouteValue[] = [];
  for (const field of head.headers) {
    if (field.name !== "route") continue;
    const ranges = splitCommaValues(head.text, field.valueStart, field.valueEnd);
    ranges.forEach((range, index) => {
      const uri = parseNameAddr(head.text.slice(range.start, range.end))?.uri ?? "";
      out.push({ field, range, index, all: ranges, uri, parsed: parseSipUri(uri) });
    });
  }
  return out;
}

/** Removes Route values: a whole line when all its values go, else just those values. */
function removeRouteValues(edit: MessageEdit, values: RouteValue[]): void {
  if (values.length === 0) return;
  const byField = new Map<HeaderField, RouteValue[]>();
  for (const v of values) byField.set(v.field, [...(byField.get(v.field) ?? []), v]);
  for (const [field, removed] of byField) {
    const all = removed[0].all;
    if (removed.length === all.length) {
      edit.remove(field.start, field.end);
      continue;
    }
    for (const v of removed) {
      // Take the value with the comma after it, or before it for the last value of the line.
      if (v.index < all.length - 1) edit.remove(all[v.index].start, all[v.index + 1].start);
      else edit.remove(all[v.index - 1].end, all[v.index].end);
    }
  }
}

/** Whether a URI names this proxy (transport from `;transport=`, lower case, or sips -> tls). */
function isOurs(host: ProxyHost, uri: SipUri): boolean {
  const transport = uri.params.get("transport")?.toLowerCase() ??
    (uri.scheme === "sips" ? "tls" : undefined);
  return host.isLocal(uri.host, uri.port, transport);
}

function routeByPlugins(
  host: ProxyHost,
  head: SipHead,
  uri: SipUri | undefined,
  source: MessageSource,
): RouteResult | undefined {
  if (host.routers.length === 0) return undefined;
  const request = {
    head,
    method: head.method,
    uri,
    source: { transport: source.transport, hostname: source.hostname, port: source.port },
  };
  for (const router of host.routers) {
    let result: RouteResult | undefined;
    try {
      result = router.route(request);
    } catch (error) {
      return routerFailed(host, router, error);
    }
    if (result !== undefined) return result;
  }
  return undefined;
}

/**
 * A router plugin threw: the request gets a 500 (a plugin cannot take the worker down), the
 * exception is logged with the plugin's name and counted (`plugin_errors`).
 */
function routerFailed(host: ProxyHost, router: Router, error: unknown): RouteResult {
  const name = pluginOf(router) ?? "(unnamed router)";
  host.count("plugin_errors");
  pluginLog.error("plugin {plugin}: route() threw: {error}", {
    plugin: name,
    error: describeError(error),
    stack: error instanceof Error ? error.stack : undefined,
  });
  return {
    reply: {
      status: 500,
      reason: "Server Internal Error",
      headers: [
        `Reason: SIP;cause=500;text="router plugin ${name.replace(/[^\w.-]/g, "_")} failed"`,
      ],
    },
  };
}

function requestUriStart(head: SipHead): number {
  return head.method.length + 1;
}

/**
 * The branch of our Via (§16.11): equal for a retransmission, for the ACK of a non-2xx final
 * response and for a CANCEL (so they match the INVITE's transaction downstream), different
 * for every other transaction.
 */
export function statelessBranch(head: SipHead, topVia: Via): string {
  const branch = topVia.params.get("branch");
  if (branch !== undefined && branch.startsWith("z9hG4bK")) {
    return `z9hG4bK${hash64Joined(branch, topVia.host, topVia.port)}`;
  }
  // RFC 2543 peers: the transaction is identified by these (§17.2.3). Not the To tag: the
  // INVITE has none and the ACK of its non-2xx response has one, yet they must match.
  const cseq = parseCSeq(getValue(head, "cseq"))!;
  const key = `${getValue(head, "call-id")}|${
    tagOf(getValue(head, "from")) ?? ""
  }|${cseq.seq}|${head.uri}|${topVia.host}|${topVia.port}|${branch ?? ""}`;
  return `z9hG4bK${hash64(key)}`;
}

/**
 * Sets received and rport on the sender's Via value (`value`, at offset `at` of the head) (§18.2.1,
 * RFC 3581): small edits in place, where the Via's own parameter list found them, not the value
 * written anew. A `received` the sender wrote itself is replaced: it must name the real source.
 */
function addReceived(
  edit: MessageEdit,
  value: string,
  at: number,
  via: Via,
  source: MessageSource,
): void {
  const rport = via.params.get("rport");
  const hasReceived = via.params.has("received");
  if (bareIp(via.host) === source.hostname && rport === undefined && !hasReceived) return;
  if (rport === "") {
    const flag = paramSpan(via.params, "rport")!;
    edit.replace(at + flag.start, at + flag.nameEnd, `;rport=${source.port}`);
  }
  const ip = source.hostname.includes(":") ? `[${source.hostname}]` : source.hostname;
  const received = `;received=${ip}`;
  if (!hasReceived) return void edit.insert(at + value.length, received);
  const span = paramSpan(via.params, "received")!;
  if (value.slice(span.start, span.end) !== received) {
    edit.replace(at + span.start, at + span.end, received);
  }
}

function bareIp(host: string): string {
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

/**
 * One Record-Route, or two when the request changes transport (so each side sees its own); a
 * flow token (`user`) goes in both, so that the flow is found whichever way a request enters.
 * Only addresses sipedge listens on: with no listener of the outbound transport, both sides get
 * the inbound one (the only way back in for a new connection).
 */
function recordRouteLines(
  host: ProxyHost,
  outTransport: string,
  inTransport: string,
  user: string,
): string {
  const line = (transport: string) =>
    `Record-Route: <${ourUri(host, transport, transport, user)};lr>\r\n`;
  const outListens = host.advertised(outTransport) !== undefined;
  const inListens = host.advertised(inTransport) !== undefined;
  if (!outListens) return inListens ? line(inTransport) : "";
  if (outTransport === inTransport || !inListens) return line(outTransport);
  return line(outTransport) + line(inTransport);
}
