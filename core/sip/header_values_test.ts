/** Tests of header value parsing: comma lists, Via, name-addr, CSeq (RFC 3261 §20, §25). */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  firstCommaValue,
  ParamList,
  parseCSeq,
  parseNameAddr,
  parseParams,
  parseVia,
  splitCommaValues,
  tagOf,
} from "./header_values.ts";

const values = (text: string) =>
  splitCommaValues(text, 0, text.length).map((r) => text.slice(r.start, r.end));

Deno.test("splitCommaValues", async (t) => {
  await t.step("plain list, trimmed", () => {
    assert.deepEqual(values("a, b ,c,\td"), ["a", "b", "c", "d"]);
  });
  await t.step("one value", () => assert.deepEqual(values("<sip:a;lr>"), ["<sip:a;lr>"]));
  await t.step("empty elements are skipped", () => {
    assert.deepEqual(values(" , a,, ,b, "), ["a", "b"]);
    assert.deepEqual(values(""), []);
  });
  await t.step("commas inside quoted strings", () => {
    assert.deepEqual(values(`"Smith, John" <sip:j@a>, "x" <sip:y@b>`), [
      `"Smith, John" <sip:j@a>`,
      `"x" <sip:y@b>`,
    ]);
  });
  await t.step("escaped quote inside a quoted string", () => {
    assert.deepEqual(values(`"a \\", b" <sip:a@b>, <sip:c@d>`), [
      `"a \\", b" <sip:a@b>`,
      "<sip:c@d>",
    ]);
  });
  await t.step("commas inside <...>", () => {
    assert.deepEqual(values("<sip:a@b;x=1,2>;q=1, <sip:c@d?h=a,b>"), [
      "<sip:a@b;x=1,2>;q=1",
      "<sip:c@d?h=a,b>",
    ]);
  });
  await t.step("< inside quotes does not open a URI", () => {
    assert.deepEqual(values(`"<" <sip:a@b>, <sip:c@d>`), [`"<" <sip:a@b>`, "<sip:c@d>"]);
  });
  await t.step("Via list", () => {
    assert.deepEqual(
      values("SIP/2.0/TCP a:5060;branch=z9hG4bK1 , SIP/2.0/TLS [::1]:5061;branch=z9hG4bK2"),
      ["SIP/2.0/TCP a:5060;branch=z9hG4bK1", "SIP/2.0/TLS [::1]:5061;branch=z9hG4bK2"],
    );
  });
  await t.step("ranges are offsets into the text (sub-range)", () => {
    const text = "Route: <sip:a;lr>, <sip:b;lr>\r\n";
    const ranges = splitCommaValues(text, 7, text.length - 2);
    assert.deepEqual(ranges, [{ start: 7, end: 17 }, { start: 19, end: 29 }]);
  });
});

Deno.test("splitCommaValues property: joining plain tokens round-trips", () => {
  const token = fc.stringMatching(/^[A-Za-z0-9<>;=:@.]{1,10}$/).filter((s) =>
    !s.includes("<") && !s.includes(">")
  );
  fc.assert(
    fc.property(
      fc.array(token, { maxLength: 8 }),
      fc.constantFrom(",", ", ", " ,\t"),
      (xs, sep) => {
        assert.deepEqual(values(xs.join(sep)), xs);
      },
    ),
  );
});

Deno.test("firstCommaValue is splitCommaValues' first element (property)", () => {
  const part = fc.constantFrom(",", " ", "\t", '"', "\\", "<", ">", "a", "sip:x", ";b=1");
  fc.assert(
    fc.property(fc.array(part, { maxLength: 10 }), (parts) => {
      const text = `x:${parts.join("")}!`;
      const end = text.length - 1;
      assert.deepEqual(
        firstCommaValue(text, 2, end),
        splitCommaValues(text, 2, end)[0],
        JSON.stringify(text),
      );
    }),
    { numRuns: 5000 },
  );
});

Deno.test("parseParams", () => {
  const p = parseParams(';Branch=z9hG4bK1 ; rport ;received=1.2.3.4;x="a;b";;=v');
  assert.deepEqual([...p], [
    ["branch", "z9hG4bK1"],
    ["rport", ""],
    ["received", "1.2.3.4"],
    ["x", '"a;b"'],
  ]);
});

Deno.test("parseVia", async (t) => {
  await t.step("transport, host, port, params", () => {
    const via = parseVia("SIP/2.0/TCP Client.Atlanta.example.com:5070;branch=z9hG4bK74bf9;rport")!;
    assert.equal(via.transport, "TCP");
    assert.equal(via.host, "client.atlanta.example.com");
    assert.equal(via.port, 5070);
    assert.deepEqual([...via.params], [["branch", "z9hG4bK74bf9"], ["rport", ""]]);
  });
  await t.step("lower-case transport and no port", () => {
    const via = parseVia("SIP/2.0/tls 192.0.2.4")!;
    assert.equal(via.transport, "TLS");
    assert.equal(via.host, "192.0.2.4");
    assert.equal(via.port, 0);
    assert.equal(via.params.size, 0);
  });
  await t.step("IPv6 sent-by", () => {
    const via = parseVia("SIP/2.0/TCP [2001:DB8::9:1]:5060;branch=z9hG4bKas3-111")!;
    assert.equal(via.host, "[2001:db8::9:1]");
    assert.equal(via.port, 5060);
    assert.equal(via.params.get("branch"), "z9hG4bKas3-111");
    const noPort = parseVia("SIP/2.0/TCP [::1];branch=z9hG4bK1")!;
    assert.equal(noPort.host, "[::1]");
    assert.equal(noPort.port, 0);
  });
  await t.step("spaces around slashes and before params (RFC 4475 wsinv)", () => {
    const via = parseVia("SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw")!;
    assert.equal(via.transport, "UDP");
    assert.equal(via.host, "192.0.2.2");
    assert.deepEqual([...via.params], [["rport", ""], ["branch", "390skdjuw"]]);
    const spaced = parseVia(
      "SIP/2.0/TCP h.example.com:5060 ; branch = z9hG4bK1 ;received=1.2.3.4",
    )!;
    assert.equal(spaced.port, 5060);
    assert.equal(spaced.params.get("branch"), "z9hG4bK1");
    assert.equal(spaced.params.get("received"), "1.2.3.4");
  });
  await t.step("received / rport / i values", () => {
    const via = parseVia(
      "SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKx;i=42;rport=33000;received=[::1]",
    )!;
    assert.equal(via.params.get("i"), "42");
    assert.equal(via.params.get("rport"), "33000");
    assert.equal(via.params.get("received"), "[::1]");
  });
  for (
    const bad of [
      "",
      "SIP/2.0/TCP",
      "SIP/2.0/TCP ",
      "SIP/2.0 TCP host",
      "SIP/1.0/TCP host",
      "HTTP/2.0/TCP host",
      "SIP/2.0/TCP host:99999",
      "SIP/2.0/TCP host:0",
      "SIP/2.0/TCP host:port",
      "SIP/2.0/TCP host extra;branch=z9hG4bK1",
      "SIP/2.0/TCP [::1;branch=z9hG4bK1",
      "SIP/2.0/TCP ::1;branch=z9hG4bK1",
      "SIP/2.0/TCP ho_st;branch=z9hG4bK1",
      "SIP/2.0/T CP host",
    ]
  ) {
    await t.step(`malformed: ${JSON.stringify(bad)}`, () => assert.equal(parseVia(bad), undefined));
  }
});

Deno.test('parseVia: LWS around the sent-by colon (RFC 3261 §25.1 COLON = SWS ":" SWS)', () => {
  // sent-by = host [ COLON port ] and COLON allows white space on either side.
  const via = parseVia("SIP/2.0/TCP host.example.com : 5070;branch=z9hG4bK1");
  assert.notEqual(via, undefined);
  assert.equal(via!.host, "host.example.com");
  assert.equal(via!.port, 5070);
});

Deno.test("parseNameAddr", async (t) => {
  await t.step("name-addr with display name and header params", () => {
    assert.deepEqual(parseNameAddr(`"Bob, \\"B\\" <x>" <sip:bob@biloxi.example.com>;tag=a6c85cf`), {
      uri: "sip:bob@biloxi.example.com",
      params: new Map([["tag", "a6c85cf"]]),
    });
  });
  await t.step("URI params stay in the URI", () => {
    assert.deepEqual(parseNameAddr("<sip:p1.example.com;lr;transport=tcp>;x=1"), {
      uri: "sip:p1.example.com;lr;transport=tcp",
      params: new Map([["x", "1"]]),
    });
  });
  await t.step("token display name", () => {
    assert.equal(parseNameAddr("Bob Smith <sip:bob@b>")?.uri, "sip:bob@b");
  });
  await t.step("addr-spec: params after the URI are header params", () => {
    assert.deepEqual(parseNameAddr("sip:alice@atlanta.example.com;tag=88sja8x"), {
      uri: "sip:alice@atlanta.example.com",
      params: new Map([["tag", "88sja8x"]]),
    });
    assert.deepEqual(parseNameAddr("  tel:+15551234  "), {
      uri: "tel:+15551234",
      params: new Map(),
    });
  });
  for (const bad of ["", "<sip:a@b", "<>", "< >;tag=1", "sip:a b@c", "   ", ";tag=1"]) {
    await t.step(`malformed: ${JSON.stringify(bad)}`, () => {
      assert.equal(parseNameAddr(bad), undefined);
    });
  }
  await t.step("tagOf", () => {
    assert.equal(tagOf(`"A" <sip:a@b>;tag=xyz`), "xyz");
    assert.equal(tagOf("<sip:a@b;tag=inside-uri>"), undefined);
    assert.equal(tagOf("sip:a@b;TAG=up"), "up");
    assert.equal(tagOf("<sip:a@b>"), undefined);
  });
});

Deno.test("parseCSeq", async (t) => {
  await t.step("valid", () => {
    assert.deepEqual(parseCSeq("4711 INVITE"), { seq: 4711, method: "INVITE" });
    assert.deepEqual(parseCSeq("0 ACK"), { seq: 0, method: "ACK" });
    assert.deepEqual(parseCSeq("1\t \tNEWMETHOD"), { seq: 1, method: "NEWMETHOD" });
    assert.deepEqual(parseCSeq("4294967295 BYE"), { seq: 4294967295, method: "BYE" });
    assert.deepEqual(parseCSeq("007 OPTIONS"), { seq: 7, method: "OPTIONS" });
  });
  for (
    const bad of [
      "",
      "INVITE",
      "1",
      "1INVITE",
      "-1 INVITE",
      "4294967296 INVITE", // 2**32: out of range (RFC 3261 §8.1.1.5: < 2**31, §25: 32 bit)
      "12345678901 INVITE",
      "1 INV ITE",
      "1 INVITE extra",
      "1.5 INVITE",
      "1 <INVITE>",
    ]
  ) {
    await t.step(
      `malformed: ${JSON.stringify(bad)}`,
      () => assert.equal(parseCSeq(bad), undefined),
    );
  }
});

Deno.test("ParamList: the same answers as parseParams, read on demand", async (t) => {
  await t.step("flags, values, case, spaces, quoted semicolons, repeats", () => {
    const text = ';Branch = z9hG4bK1 ;rport; RECEIVED=1.2.3.4;x="a;b=c";branch=z9hG4bK2;;=v';
    const list = new ParamList(text);
    assert.equal(list.get("branch"), "z9hG4bK2", "the last of a repeated name wins, as in a Map");
    assert.equal(list.get("rport"), "");
    assert.equal(list.get("received"), "1.2.3.4");
    assert.equal(list.get("x"), '"a;b=c"');
    assert.equal(list.get("b"), undefined, "inside a quoted string");
    assert.ok(list.has("rport") && !list.has("maddr"));
    assert.deepEqual([...list], [...parseParams(text)]);
    assert.equal(list.size, parseParams(text).size);
  });
  await t.step("property: get and has agree with parseParams for any text", () => {
    const part = fc.constantFrom(
      ";",
      "=",
      " ",
      '"',
      "\\",
      "branch",
      "BRANCH",
      "rport",
      "received",
      "i",
      "1.2.3.4",
      "z9hG4bK",
      "\u00c9",
    );
    fc.assert(
      fc.property(fc.array(part, { maxLength: 12 }), (parts) => {
        const text = parts.join("");
        const map = parseParams(text);
        const list = new ParamList(text);
        for (const name of ["branch", "rport", "received", "i", "", "\u00e9", "1.2.3.4"]) {
          assert.equal(list.get(name), map.get(name), `${JSON.stringify(text)} ${name}`);
          assert.equal(list.has(name), map.has(name), `${JSON.stringify(text)} ${name}`);
        }
      }),
      { numRuns: 5000 },
    );
  });
  await t.step("property: span is where get reads, in the value the list was read from", () => {
    const part = fc.constantFrom(
      ";",
      "=",
      " ",
      "\t",
      '"',
      "rport",
      "RPort",
      "received",
      "x",
      "1.2.3.4",
    );
    fc.assert(
      fc.property(fc.array(part, { maxLength: 12 }), (parts) => {
        const params = ";" + parts.join("");
        const value = "SIP/2.0/TCP h" + params; // the list is read from offset 13
        const list = new ParamList(params, 13);
        for (const name of ["rport", "received", "x"]) {
          const span = list.span(name);
          const why = `${JSON.stringify(params)} ${name}`;
          if (list.get(name) === undefined) {
            assert.equal(span, undefined, why);
            continue;
          }
          assert.ok(span !== undefined, why);
          assert.equal(value[span.start], ";", why);
          assert.equal(value.slice(span.start + 1, span.nameEnd).trim().toLowerCase(), name, why);
          const alone = parseParams(value.slice(span.start, span.end));
          assert.equal(alone.size, 1, why);
          assert.equal(alone.get(name), list.get(name), why);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

Deno.test("parseVia accepts exactly what its former RegExp accepted (property)", () => {
  // The RegExp parseVia was written from; the hand parser must give the same result.
  const VIA =
    /^SIP\s*\/\s*2\.0\s*\/\s*([A-Za-z0-9-]+)\s+(\[[^\]\s]*\]|[^;:\s]+)(?:\s*:\s*([0-9]{1,5}))?\s*(;.*)?$/is;
  const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*|[0-9.]+)$/;
  const oracle = (value: string) => {
    const m = VIA.exec(value);
    if (m === null || !HOST.test(m[2])) return undefined;
    const port = m[3] === undefined ? 0 : Number(m[3]);
    if (port > 65535 || (m[3] !== undefined && port === 0)) return undefined;
    return {
      transport: m[1].toUpperCase(),
      host: m[2].toLowerCase(),
      port,
      params: [...(m[4] === undefined ? new Map() : parseParams(m[4]))],
    };
  };
  const part = fc.constantFrom(
    ..."SIPsip/2.0 \t\r\n\u00a0TCPudp-[]:;=abc159.6\u00e9\u000b,".split(""),
    "SIP/2.0/TCP ",
    "SIP / 2.0 / UDP ",
    "host.example.com",
    "[2001:db8::1]",
    ":5060",
    ";branch=z9hG4bK1",
    ";rport",
    " ; received = 1.2.3.4",
    "99999",
  );
  let accepted = 0;
  fc.assert(
    fc.property(fc.array(part, { minLength: 1, maxLength: 10 }), (parts) => {
      const value = parts.join("");
      const expected = oracle(value);
      const via = parseVia(value);
      if (expected !== undefined) accepted++;
      assert.deepEqual(
        via === undefined ? undefined : { ...via, params: [...via.params] },
        expected,
        JSON.stringify(value),
      );
    }),
    { numRuns: 20000 },
  );
  assert.ok(accepted > 100, `the generator makes valid Vias too (${accepted})`);
});

Deno.test("parseCSeq answers exactly as its former RegExp did (property)", () => {
  const CSEQ = /^([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)$/;
  const oracle = (value: string) => {
    const m = CSEQ.exec(value);
    if (m === null) return undefined;
    const seq = Number(m[1]);
    return seq > 0xffffffff ? undefined : { seq, method: m[2] };
  };
  const part = fc.constantFrom(
    ..."0123456789 \t\r\nINVITEack-.!%*_+`'~\u00e9;:,".split(""),
    "4294967295",
    "4294967296",
    "12345678901",
    " OPTIONS",
  );
  let accepted = 0;
  fc.assert(
    fc.property(fc.array(part, { minLength: 1, maxLength: 8 }), (parts) => {
      const value = parts.join("");
      const expected = oracle(value);
      if (expected !== undefined) accepted++;
      assert.deepEqual(parseCSeq(value), expected, JSON.stringify(value));
    }),
    { numRuns: 20000 },
  );
  assert.ok(accepted > 100, `the generator makes valid CSeqs too (${accepted})`);
});
