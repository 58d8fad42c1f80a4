/** Tests of the SIP head parser (RFC 3261 §7, §25; RFC 4475 in spirit). */

import assert from "node:assert/strict";
import fc from "fast-check";
import { CONTENT_LENGTH_INVALID, parseHead } from "./parse_head.ts";
import { findHeader, findHeaders, getHeader, headerValue } from "./head.ts";

const CRLF = "\r\n";
const head = (...lines: string[]) => lines.join(CRLF) + CRLF + CRLF;

Deno.test("parseHead: request line", () => {
  const h = parseHead(head(
    "INVITE sip:bob@biloxi.example.com;transport=tcp SIP/2.0",
    "Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9",
    "Content-Length: 0",
  ));
  assert.equal(h.error, undefined);
  assert.equal(h.isRequest, true);
  assert.equal(h.method, "INVITE");
  assert.equal(h.uri, "sip:bob@biloxi.example.com;transport=tcp");
  assert.equal(h.version, "SIP/2.0");
  assert.equal(h.status, 0);
  assert.equal(h.reason, "");
  assert.equal(
    h.headersStart,
    "INVITE sip:bob@biloxi.example.com;transport=tcp SIP/2.0\r\n".length,
  );
  assert.equal(h.contentLength, 0);
  assert.deepEqual(h.headers.map((f) => f.name), ["via", "content-length"]);
});

Deno.test("parseHead: extension method and non-SIP Request-URI scheme", () => {
  const h = parseHead(head("NEWMETHOD tel:+1-201-555-0123 SIP/2.0", "l: 0"));
  assert.equal(h.error, undefined);
  assert.equal(h.method, "NEWMETHOD");
  assert.equal(h.uri, "tel:+1-201-555-0123");
});

Deno.test("parseHead: status line", async (t) => {
  await t.step("simple", () => {
    const h = parseHead(head("SIP/2.0 200 OK", "Content-Length: 12"));
    assert.equal(h.error, undefined);
    assert.equal(h.isRequest, false);
    assert.equal(h.version, "SIP/2.0");
    assert.equal(h.status, 200);
    assert.equal(h.reason, "OK");
    assert.equal(h.method, "");
    assert.equal(h.contentLength, 12);
  });
  await t.step("reason phrase with spaces and latin1 bytes", () => {
    const h = parseHead(head("SIP/2.0 486 Busy Here \xe9t\xe9  now", "l: 0"));
    assert.equal(h.status, 486);
    assert.equal(h.reason, "Busy Here \xe9t\xe9  now");
  });
  await t.step("empty reason phrase", () => {
    const h = parseHead(head("SIP/2.0 100 ", "l: 0"));
    assert.equal(h.error, undefined);
    assert.equal(h.status, 100);
    assert.equal(h.reason, "");
  });
  for (
    const line of [
      "SIP/2.0 2000 OK",
      "SIP/2.0 20 OK",
      "SIP/2.0 abc OK",
      "SIP/2.0 700 Nope",
      "SIP/2.0 099 Nope",
      "SIP/2.0",
      "SIP/2.0 200OK",
    ]
  ) {
    await t.step(`malformed: ${JSON.stringify(line)}`, () => {
      const h = parseHead(head(line, "l: 0"));
      assert.equal(h.isRequest, false);
      assert.equal(h.error, "Malformed status line");
    });
  }
});

Deno.test("parseHead: malformed request lines set error", async (t) => {
  const cases: [string, string][] = [
    ["INVITE  sip:bob@example.com SIP/2.0", "Malformed request line"], // two spaces
    ["INVITE sip:bob@example.com  SIP/2.0", "Malformed request line"],
    ["INVITE sip:bob@example.com SIP/2.0 ", "Malformed request line"], // trailing space
    [" INVITE sip:bob@example.com SIP/2.0", "Malformed request line"], // leading space
    ["INVITE sip:bob@example.com", "Malformed request line"], // missing version
    ["INVITE", "Malformed request line"],
    ["", "Malformed request line"],
    ["INVITE sip:bob @example.com SIP/2.0", "Malformed request line"], // LWS inside the URI
    ["INVITE sip:bob@example.com\tSIP/2.0", "Malformed request line"],
    ["INV<ITE sip:bob@example.com SIP/2.0", "Malformed method"],
    ["INVITE bob@example.com SIP/2.0", "Malformed Request-URI"], // no scheme
    ["INVITE sip: SIP/2.0", "Malformed Request-URI"],
    ["INVITE sip:bob@example.com SIP/2", "Malformed SIP version"],
    ["INVITE sip:bob@example.com HTTP/1.1", "Malformed SIP version"],
    ["INVITE sip:bob@example.com SIP/2.0/TCP", "Malformed SIP version"],
  ];
  for (const [line, error] of cases) {
    await t.step(JSON.stringify(line), () => {
      const h = parseHead(head(line, "Content-Length: 0"));
      assert.equal(h.isRequest, true);
      assert.equal(h.error, error);
      // Framing still works: Content-Length was read.
      assert.equal(h.contentLength, 0);
    });
  }
});

Deno.test("parseHead: other SIP versions parse (the proxy answers 505)", () => {
  const h = parseHead(head("OPTIONS sip:a@b SIP/3.0", "l: 0"));
  assert.equal(h.error, undefined);
  assert.equal(h.version, "SIP/3.0");
});

Deno.test("parseHead: compact forms are expanded", () => {
  const h = parseHead(head(
    "INVITE sip:a@b SIP/2.0",
    "v: SIP/2.0/TCP h;branch=z9hG4bK1",
    "f: <sip:a@b>;tag=1",
    "t: <sip:c@d>",
    "i: call-1",
    "m: <sip:a@h>",
    "k: 100rel",
    "s: hello",
    "c: application/sdp",
    "e: gzip",
    "o: presence",
    "l: 0",
  ));
  assert.equal(h.error, undefined);
  assert.deepEqual(h.headers.map((f) => f.name), [
    "via",
    "from",
    "to",
    "call-id",
    "contact",
    "supported",
    "subject",
    "content-type",
    "content-encoding",
    "event",
    "content-length",
  ]);
  assert.equal(getHeader(h, "call-id"), "call-1");
  assert.equal(getHeader(h, "event"), "presence");
});

Deno.test("parseHead: header names are case-insensitive; compact forms in upper case", () => {
  const h = parseHead(head(
    "BYE sip:a@b SIP/2.0",
    "cAlL-iD: x1",
    "VIA: SIP/2.0/TCP h;branch=z9hG4bK1",
    "F: <sip:a@b>",
    "CONTENT-LENGTH: 7",
  ));
  assert.deepEqual(h.headers.map((f) => f.name), ["call-id", "via", "from", "content-length"]);
  assert.equal(h.contentLength, 7);
});

Deno.test("parseHead: spacing around the colon", () => {
  const h = parseHead(head(
    "BYE sip:a@b SIP/2.0",
    "Call-ID:nospace",
    "Subject   :   padded   ",
    "To\t:\t<sip:c@d>",
    "Content-Length:0",
  ));
  assert.equal(h.error, undefined);
  assert.equal(getHeader(h, "call-id"), "nospace");
  assert.equal(getHeader(h, "subject"), "padded");
  assert.equal(getHeader(h, "to"), "<sip:c@d>");
  assert.equal(h.contentLength, 0);
});

Deno.test("parseHead: header offsets point into the text", () => {
  const text = head("BYE sip:a@b SIP/2.0", "Subject:  hi there ", "l: 0");
  const h = parseHead(text);
  const subject = findHeader(h, "subject")!;
  assert.equal(text.slice(subject.start, subject.end), "Subject:  hi there \r\n");
  assert.equal(text.slice(subject.valueStart, subject.valueEnd), "hi there");
  assert.equal(subject.folded, false);
});

Deno.test("parseHead: folded values (RFC 4475 wsinv style)", () => {
  const text = head(
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
    "TO :",
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
    "Via  : SIP  /   2.0",
    " /UDP",
    "    192.0.2.2;rport;branch=390skdjuw",
    "Subject: one",
    "\t two  ",
    "  ",
    "Content-Length: 0",
  );
  const h = parseHead(text);
  assert.equal(h.error, undefined);
  assert.deepEqual(h.headers.map((f) => [f.name, f.folded]), [
    ["to", true],
    ["via", true],
    ["subject", true],
    ["content-length", false],
  ]);
  assert.equal(
    getHeader(h, "to"),
    "sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
  );
  assert.equal(getHeader(h, "via"), "SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw");
  assert.equal(getHeader(h, "subject"), "one two");
  // The field spans every continuation line, including the blank-looking one.
  const subject = findHeader(h, "subject")!;
  assert.equal(text.slice(subject.start, subject.end), "Subject: one\r\n\t two  \r\n  \r\n");
});

Deno.test("parseHead: multiple fields and multiple values", () => {
  const h = parseHead(head(
    "INVITE sip:a@b SIP/2.0",
    "Route: <sip:p1;lr>, <sip:p2;lr>",
    "Subject: x",
    "Route: <sip:p3;lr>",
    "l: 0",
  ));
  const routes = findHeaders(h, "route");
  assert.equal(routes.length, 2);
  assert.equal(headerValue(h, routes[0]), "<sip:p1;lr>, <sip:p2;lr>");
  assert.equal(headerValue(h, routes[1]), "<sip:p3;lr>");
  assert.equal(getHeader(h, "route"), "<sip:p1;lr>, <sip:p2;lr>");
});

Deno.test("parseHead: LF-only and mixed line endings", () => {
  const h = parseHead("OPTIONS sip:a@b SIP/2.0\nCall-ID: x\r\nSubject: y\nl: 3\n\n");
  assert.equal(h.error, undefined);
  assert.equal(h.method, "OPTIONS");
  assert.equal(h.version, "SIP/2.0");
  assert.equal(getHeader(h, "call-id"), "x");
  assert.equal(getHeader(h, "subject"), "y");
  assert.equal(h.contentLength, 3);
});

Deno.test("parseHead: malformed header lines", async (t) => {
  for (
    const [line, error] of [
      ["NoColonHere", "Malformed header line"],
      [": empty name", "Malformed header name"],
      ["Bad Name: x", "Malformed header name"],
      ["Bad<Name>: x", "Malformed header name"],
    ]
  ) {
    await t.step(line, () => {
      const h = parseHead(head("BYE sip:a@b SIP/2.0", "Call-ID: 1", line, "l: 0"));
      assert.equal(h.error, error);
      // The good fields around it are still there.
      assert.deepEqual(h.headers.map((f) => f.name), ["call-id", "content-length"]);
      assert.equal(h.contentLength, 0);
    });
  }
  await t.step("folding before the first header", () => {
    const h = parseHead(head("BYE sip:a@b SIP/2.0", " folded", "l: 0"));
    assert.equal(h.error, "Header folding before the first header");
  });
  await t.step("the first error is kept", () => {
    const h = parseHead(head("BYE  sip:a@b SIP/2.0", "NoColon", "l: x"));
    assert.equal(h.error, "Malformed request line");
  });
});

Deno.test("parseHead: Content-Length values", async (t) => {
  const cl = (...lines: string[]) => parseHead(head("BYE sip:a@b SIP/2.0", ...lines));
  await t.step("absent", () => assert.equal(cl("Call-ID: 1").contentLength, -1));
  await t.step("leading zeros", () => assert.equal(cl("Content-Length: 007").contentLength, 7));
  await t.step("two equal values are accepted", () => {
    assert.equal(cl("Content-Length: 5", "l: 5").contentLength, 5);
  });
  for (const v of ["x", "-1", "1 2", "", "12345678901", "0x10"]) {
    await t.step(`invalid ${JSON.stringify(v)}`, () => {
      const h = cl(`Content-Length: ${v}`);
      assert.equal(h.contentLength, CONTENT_LENGTH_INVALID);
      assert.equal(h.error, "Invalid Content-Length");
    });
  }
  await t.step("conflicting values", () => {
    const h = cl("Content-Length: 5", "l: 6");
    assert.equal(h.contentLength, CONTENT_LENGTH_INVALID);
    assert.equal(h.error, "Invalid Content-Length");
  });
});

Deno.test("parseHead property: never throws; offsets are ordered and inside the text", () => {
  const sipish = fc.tuple(
    fc.array(
      fc.oneof(
        fc.constantFrom(
          "INVITE sip:a@b SIP/2.0",
          "SIP/2.0 200 OK",
          "Via: SIP/2.0/TCP h",
          "l: 5",
          "Content-Length: x",
          " folded",
          "\t",
          ":",
          "",
          "\r",
          "\n",
          "\r\n",
          "a:b",
        ),
        fc.string(),
      ),
      { maxLength: 12 },
    ),
    fc.constantFrom("\r\n", "\n", ""),
  ).map(([parts, eol]) => parts.join(eol));
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: "binary" }), sipish), (text) => {
      const h = parseHead(text);
      assert.equal(h.text, text);
      assert.ok(h.headersStart >= 0 && h.headersStart <= text.length);
      let previousEnd = h.headersStart;
      for (const f of h.headers) {
        assert.ok(previousEnd <= f.start, "fields in order");
        assert.ok(f.start <= f.valueStart && f.valueStart <= f.valueEnd);
        assert.ok(f.valueEnd <= f.end && f.end <= text.length);
        assert.equal(f.name, f.name.toLowerCase());
        previousEnd = f.end;
      }
      assert.ok(h.contentLength >= -2);
      if (h.contentLength === CONTENT_LENGTH_INVALID) assert.notEqual(h.error, undefined);
      for (const f of h.headers) headerValue(h, f);
    }),
    { numRuns: 1000 },
  );
});
