/** Tests of token checks and header names read in place (RFC 3261 §7.3.3, §25.1). */

import assert from "node:assert/strict";
import fc from "fast-check";
import { COMPACT_FORMS } from "./head.ts";
import { digitsValue, headerNameAt, isToken, isTokenAt } from "./token.ts";

/** The definitions the in-place readers replace: the oracle of the property tests. */
const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
const canonical = (name: string) => {
  const lower = name.toLowerCase();
  return lower.length === 1 ? COMPACT_FORMS[lower] ?? lower : lower;
};

Deno.test("isToken: token characters only, not empty", () => {
  assert.ok(isToken("INVITE"));
  assert.ok(isToken("x-Custom_1.2!%*+`'~"));
  assert.ok(!isToken(""));
  assert.ok(!isToken("IN VITE"));
  assert.ok(!isToken("a:b"));
  assert.ok(!isToken("caf\u00e9"));
  assert.ok(isTokenAt("xx INVITE yy", 3, 9));
  assert.ok(!isTokenAt("xx INVITE yy", 2, 9));
});

Deno.test("headerNameAt: known, compact, unknown and mixed-case names", () => {
  const at = (text: string) => headerNameAt(`  ${text}:`, 2, 2 + text.length);
  assert.equal(at("Via"), "via");
  assert.equal(at("VIA"), "via");
  assert.equal(at("v"), "via");
  assert.equal(at("V"), "via");
  assert.equal(at("Call-ID"), "call-id");
  assert.equal(at("i"), "call-id");
  assert.equal(at("Content-Length"), "content-length");
  assert.equal(at("l"), "content-length");
  assert.equal(at("X-Custom-Header"), "x-custom-header");
  assert.equal(at("q"), "q", "a one-letter name that is no compact form");
  assert.equal(at("Vias"), "vias", "a known name's prefix or extension is another name");
  assert.equal(at("Vi"), "vi");
  assert.equal(at("Via_"), "via_");
  assert.equal(at("Bad Name"), undefined);
  assert.equal(at(""), undefined);
  assert.equal(at("Vi\u00e1"), undefined);
});

Deno.test("isToken and headerNameAt agree with the RegExp and toLowerCase they replace", () => {
  const chars = fc.constantFrom(
    ..."aAvViIlLfFtT-_.!%*+`'~09 :\u00e9\u00c9@[]\"\t".split(""),
    "Via",
    "CALL-ID",
    "content-length",
    "Max-Forwards",
    "record-route",
  );
  fc.assert(
    fc.property(fc.array(chars, { maxLength: 6 }), (parts) => {
      const name = parts.join("");
      assert.equal(isToken(name), TOKEN.test(name), JSON.stringify(name));
      const expected = TOKEN.test(name) ? canonical(name) : undefined;
      assert.equal(headerNameAt(`x${name}y`, 1, 1 + name.length), expected, JSON.stringify(name));
    }),
    { numRuns: 5000 },
  );
});

Deno.test("digitsValue: the number of 1 to max digits, -1 for anything else", () => {
  assert.equal(digitsValue("5060", 0, 4, 5), 5060);
  assert.equal(digitsValue("x:5060;", 2, 6, 5), 5060);
  assert.equal(digitsValue("00070", 0, 5, 5), 70);
  assert.equal(digitsValue("4294967295", 0, 10, 10), 4294967295);
  assert.equal(digitsValue("123456", 0, 6, 5), -1, "longer than max");
  assert.equal(digitsValue("12", 1, 1, 5), -1, "empty");
  assert.equal(digitsValue("1 2", 0, 3, 5), -1);
  assert.equal(digitsValue("-1", 0, 2, 5), -1);
  assert.equal(digitsValue("\u0661", 0, 1, 5), -1, "digits are ASCII only");
});

Deno.test("digitsValue agrees with the RegExp and Number() it replaces", () => {
  const chars = fc.constantFrom(..."0123456789 +-.eExa\t\u0660".split(""));
  fc.assert(
    fc.property(
      fc.array(chars, { maxLength: 12 }),
      fc.integer({ min: 1, max: 10 }),
      (parts, max) => {
        const text = parts.join("");
        const expected = new RegExp(`^[0-9]{1,${max}}$`).test(text) ? Number(text) : -1;
        assert.equal(
          digitsValue(`<${text}>`, 1, 1 + text.length, max),
          expected,
          JSON.stringify(text),
        );
      },
    ),
    { numRuns: 5000 },
  );
});
