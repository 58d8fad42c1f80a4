/** Tests of SIP URI parsing (RFC 3261 §19.1, §25.1; RFC 4475 §3.1.1 in spirit). */

import assert from "node:assert/strict";
import fc from "fast-check";
import { bareHost, formatHostPort, isHost, parseHostPort, parseSipUri } from "./uri.ts";

Deno.test("parseSipUri: host only", () => {
  assert.deepEqual(parseSipUri("sip:Example.COM"), {
    scheme: "sip",
    user: "",
    host: "example.com",
    port: 0,
    params: new Map(),
    hasHeaders: false,
  });
});

Deno.test("parseSipUri: user, port and params", () => {
  assert.deepEqual(
    parseSipUri("SIP:alice@atlanta.example.com:5070;Transport=TCP;lr;maddr=10.0.0.1"),
    {
      scheme: "sip",
      user: "alice",
      host: "atlanta.example.com",
      port: 5070,
      params: new Map([["transport", "TCP"], ["lr", ""], ["maddr", "10.0.0.1"]]),
      hasHeaders: false,
    },
  );
});

Deno.test("parseSipUri: headers after the host are flagged (not allowed in a Request-URI)", () => {
  assert.equal(parseSipUri("sip:user@example.com?Route=%3Csip:example.com%3E")!.hasHeaders, true);
  const userWithQuestionMark = parseSipUri("sip:alice?x@example.com")!;
  assert.equal(userWithQuestionMark.user, "alice?x");
  assert.equal(userWithQuestionMark.hasHeaders, false);
});

Deno.test("parseSipUri: password is not part of the user", () => {
  const uri = parseSipUri("sip:alice:secretword@atlanta.example.com;transport=tcp")!;
  assert.equal(uri.user, "alice");
  assert.equal(uri.host, "atlanta.example.com");
  assert.equal(uri.params.get("transport"), "tcp");
});

Deno.test("parseSipUri: sips", () => {
  const uri = parseSipUri("sips:bob@biloxi.example.com")!;
  assert.equal(uri.scheme, "sips");
  assert.equal(uri.user, "bob");
});

Deno.test("parseSipUri: IPv6 references", () => {
  const a = parseSipUri("sip:[2001:db8::10]:5070;transport=tcp")!;
  assert.equal(a.host, "[2001:db8::10]");
  assert.equal(a.port, 5070);
  const b = parseSipUri("sip:user@[2001:DB8::10]")!;
  assert.equal(b.user, "user");
  assert.equal(b.host, "[2001:db8::10]");
  assert.equal(b.port, 0);
  const c = parseSipUri("sip:[::ffff:192.0.2.1]")!;
  assert.equal(c.host, "[::ffff:192.0.2.1]");
});

Deno.test("parseSipUri: headers after `?` are not params or host", () => {
  const uri = parseSipUri(
    "sip:bob@biloxi.example.com:5060;lr?subject=project%20x&priority=urgent",
  )!;
  assert.equal(uri.host, "biloxi.example.com");
  assert.equal(uri.port, 5060);
  assert.deepEqual([...uri.params], [["lr", ""]]);
  const noParams = parseSipUri("sip:b.example.com?Route=%3Csip:x%3E")!;
  assert.equal(noParams.host, "b.example.com");
  assert.equal(noParams.params.size, 0);
});

Deno.test("parseSipUri: escaped and unusual user parts (RFC 4475 §3.1.1.6 / esc01)", () => {
  // `;` is user-unreserved: the user part ends at the last `@`.
  const a = parseSipUri("sip:user;par=u%40example.net@example.com")!;
  assert.equal(a.user, "user;par=u%40example.net");
  assert.equal(a.host, "example.com");
  assert.equal(a.params.size, 0);
  const b = parseSipUri("sip:sips%3Auser%40example.com@example.net")!;
  assert.equal(b.user, "sips%3Auser%40example.com");
  assert.equal(b.host, "example.net");
  const c = parseSipUri("sip:+1-212-555-1212:1234@gateway.com;user=phone")!;
  assert.equal(c.user, "+1-212-555-1212");
  assert.equal(c.params.get("user"), "phone");
});

Deno.test("parseSipUri: `?` in the user part (user-unreserved, RFC 3261 §25.1)", () => {
  // user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
  const uri = parseSipUri("sip:alice?x@example.com");
  assert.notEqual(uri, undefined);
  assert.equal(uri!.user, "alice?x");
  assert.equal(uri!.host, "example.com");
});

Deno.test("parseSipUri: malformed", async (t) => {
  for (
    const bad of [
      "",
      "sip",
      "sip:",
      "tel:+15551234",
      "http://example.com",
      "sipx:example.com",
      "sip:@",
      "sip:user@",
      "sip:example.com:",
      "sip:example.com:0",
      "sip:example.com:65536",
      "sip:example.com:123456",
      "sip:example.com:50a0",
      "sip:exa mple.com",
      "sip:exa_mple.com",
      "sip:-example.com",
      "sip:[2001:db8::1",
      "sip:2001:db8::1",
      "sip:[2001:db8::1]x",
      "sip:[zz::1]",
    ]
  ) {
    await t.step(JSON.stringify(bad), () => assert.equal(parseSipUri(bad), undefined));
  }
});

Deno.test("parseSipUri: empty params are ignored", () => {
  assert.deepEqual([...parseSipUri("sip:user@host;;lr;")!.params], [["lr", ""]]);
});

Deno.test("parseHostPort", () => {
  assert.deepEqual(parseHostPort("Example.com:5060"), { host: "example.com", port: 5060 });
  assert.deepEqual(parseHostPort("192.0.2.1"), { host: "192.0.2.1", port: 0 });
  assert.deepEqual(parseHostPort("[::1]:65535"), { host: "[::1]", port: 65535 });
  assert.deepEqual(parseHostPort("[::1]"), { host: "[::1]", port: 0 });
  assert.equal(parseHostPort("::1"), undefined);
  assert.equal(parseHostPort("host:"), undefined);
  assert.equal(parseHostPort(""), undefined);
});

Deno.test("formatHostPort and bareHost", () => {
  assert.equal(formatHostPort("2001:db8::1", 5060), "[2001:db8::1]:5060");
  assert.equal(formatHostPort("[2001:db8::1]", 0), "[2001:db8::1]");
  assert.equal(formatHostPort("example.com", 0), "example.com");
  assert.equal(formatHostPort("192.0.2.1", 5061), "192.0.2.1:5061");
  assert.equal(bareHost("[::1]"), "::1");
  assert.equal(bareHost("example.com"), "example.com");
});

Deno.test("parseSipUri property: formatted host/port/user/params parse back", () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
  const host = fc.oneof(
    fc.array(label, { minLength: 1, maxLength: 4 }).map((ls) => ls.join(".")),
    fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join(".")),
    fc.ipV6().map((ip) => `[${ip}]`),
  );
  const user = fc.oneof(fc.constant(""), fc.stringMatching(/^[A-Za-z0-9+\-_.!~*'()&=$,]{1,10}$/));
  const param = fc.tuple(
    fc.stringMatching(/^[a-z][a-z0-9-]{0,6}$/),
    fc.oneof(fc.constant(undefined), fc.stringMatching(/^[A-Za-z0-9.-]{1,8}$/)),
  );
  fc.assert(
    fc.property(
      fc.constantFrom("sip", "sips"),
      user,
      host,
      fc.integer({ min: 0, max: 65535 }),
      fc.uniqueArray(param, { selector: (p) => p[0], maxLength: 4 }),
      (scheme, u, h, port, params) => {
        const text = `${scheme}:${u === "" ? "" : `${u}@`}${formatHostPort(h, port)}` +
          params.map(([n, v]) => v === undefined ? `;${n}` : `;${n}=${v}`).join("");
        const uri = parseSipUri(text);
        assert.notEqual(uri, undefined, text);
        assert.equal(uri!.scheme, scheme);
        assert.equal(uri!.user, u);
        assert.equal(uri!.host, h.toLowerCase());
        assert.equal(uri!.port, port);
        assert.deepEqual([...uri!.params], params.map(([n, v]) => [n, v ?? ""]));
      },
    ),
  );
});

Deno.test("parseSipUri property: never throws", () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.string().map((s) => `sip:${s}`)), (text) => {
      parseSipUri(text);
    }),
  );
});

Deno.test("isHost accepts exactly what its former RegExp accepted (property)", () => {
  const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*|[0-9.]+)$/;
  const part = fc.constantFrom(
    ..."aZ09.-:[]gG_ \u00e9".split(""),
    "example.com",
    "192.0.2.1",
    "[2001:db8::1]",
    "::",
  );
  fc.assert(
    fc.property(fc.array(part, { maxLength: 6 }), (parts) => {
      const text = parts.join("");
      assert.equal(isHost(text), HOST.test(text), JSON.stringify(text));
    }),
    { numRuns: 10000 },
  );
});

Deno.test("parseHostPort answers as its former lastIndexOf/Number version did (property)", () => {
  const former = (text: string) => {
    let host = text;
    let port = 0;
    const close = text.lastIndexOf("]");
    const colon = text.lastIndexOf(":");
    if (colon > close) {
      host = text.slice(0, colon);
      const portText = text.slice(colon + 1);
      if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
      port = Number(portText);
      if (port === 0 || port > 65535) return undefined;
    }
    return isHost(host) ? { host: host.toLowerCase(), port } : undefined;
  };
  const part = fc.constantFrom(
    ..."aZ09.-:[]; \u00e9".split(""),
    "Example.com",
    "192.0.2.1",
    "[2001:db8::1]",
    ":5060",
    ":65535",
    ":65536",
    ":00000",
  );
  fc.assert(
    fc.property(fc.array(part, { maxLength: 6 }), (parts) => {
      const text = parts.join("");
      assert.deepEqual(parseHostPort(text), former(text), JSON.stringify(text));
    }),
    { numRuns: 10000 },
  );
});

Deno.test("parseSipUri answers as its former slicing version did (property)", () => {
  const former = (text: string) => {
    const colon = text.indexOf(":");
    if (colon < 0) return undefined;
    const scheme = text.slice(0, colon).toLowerCase();
    if (scheme !== "sip" && scheme !== "sips") return undefined;
    let rest = text.slice(colon + 1);
    let user = "";
    const at = rest.indexOf("@");
    if (at >= 0) {
      user = rest.slice(0, at);
      const password = user.indexOf(":");
      if (password >= 0) user = user.slice(0, password);
      rest = rest.slice(at + 1);
    }
    const q = rest.indexOf("?");
    const hasHeaders = q >= 0;
    if (hasHeaders) rest = rest.slice(0, q);
    const semi = rest.indexOf(";");
    const parsed = parseHostPort(semi < 0 ? rest : rest.slice(0, semi));
    if (parsed === undefined) return undefined;
    const params = new Map<string, string>();
    if (semi >= 0) {
      for (const part of rest.slice(semi + 1).split(";")) {
        if (part === "") continue;
        const eq = part.indexOf("=");
        if (eq < 0) params.set(part.toLowerCase(), "");
        else params.set(part.slice(0, eq).toLowerCase(), part.slice(eq + 1));
      }
    }
    return { scheme, user, host: parsed.host, port: parsed.port, params, hasHeaders };
  };
  const part = fc.constantFrom(
    ..."sSiIpP:@;?=[]. aZ9".split(""),
    "sip:",
    "SIPS:",
    "sip:alice@",
    "alice:secret@",
    "Example.com",
    "192.0.2.1",
    "[2001:db8::1]",
    ":5060",
    ":65536",
    ";transport=TCP",
    ";lr",
    "?subject=x",
  );
  fc.assert(
    fc.property(fc.array(part, { maxLength: 8 }), (parts) => {
      const text = parts.join("");
      const got = parseSipUri(text);
      const want = former(text);
      const plain = (u: typeof got) => u && { ...u, params: [...u.params] };
      assert.deepEqual(plain(got), plain(want), JSON.stringify(text));
    }),
    { numRuns: 20000 },
  );
});
