import assert from "node:assert/strict";
import {
  configKeyHex,
  FlowTokens,
  looksLikeFlowToken,
  randomKeyHex,
  TOKEN_LENGTH,
} from "./flow_token.ts";

Deno.test("FlowTokens: a minted token checks out to its connection and transport slot", () => {
  const tokens = new FlowTokens(0xdeadbeef, [{ hex: randomKeyHex(), validUntil: 0 }]);
  for (const id of [256, 257, 2 ** 40 * 256 + 5, Number.MAX_SAFE_INTEGER - 300]) {
    const token = tokens.mint(id, 3);
    assert.equal(token.length, TOKEN_LENGTH);
    assert.ok(looksLikeFlowToken(token));
    assert.match(token, /^[A-Za-z0-9_-]+$/);
    assert.deepEqual(tokens.check(token), { ok: true, connectionId: id, slot: 3 });
  }
});

Deno.test("FlowTokens: altered, foreign and expired tokens are refused", () => {
  const key = randomKeyHex();
  const tokens = new FlowTokens(1, [{ hex: key, validUntil: 0 }]);
  const token = tokens.mint(512, 0);
  // Every single-character change is refused.
  for (let i = 0; i < token.length; i++) {
    const c = token[i] === "A" ? "B" : "A";
    const altered = token.slice(0, i) + c + token.slice(i + 1);
    assert.deepEqual(tokens.check(altered), { ok: false, why: "invalid" }, `position ${i}`);
  }
  assert.deepEqual(tokens.check("not-a-token"), { ok: false, why: "invalid" });
  // Another key: invalid. The same key, another instance: valid but not ours.
  const otherKey = new FlowTokens(1, [{ hex: randomKeyHex(), validUntil: 0 }]);
  assert.deepEqual(otherKey.check(token), { ok: false, why: "invalid" });
  const otherInstance = new FlowTokens(2, [{ hex: key, validUntil: 0 }]);
  assert.deepEqual(otherInstance.check(token), { ok: false, why: "other_instance" });
  // After a key change the previous key is accepted until its grace period ends.
  const rotated = new FlowTokens(1, [
    { hex: configKeyHex("a brand new key, 16+"), validUntil: 0 },
    { hex: key, validUntil: 1_000 },
  ]);
  assert.equal(rotated.check(token, 999).ok, true);
  assert.deepEqual(rotated.check(token, 1_001), { ok: false, why: "invalid" });
  assert.notEqual(rotated.mint(512, 0), token, "new tokens use the new key");
});

Deno.test("FlowTokens: a datagram flow names the client's address and our socket (IPv4, IPv6)", () => {
  const tokens = new FlowTokens(99, [{ hex: randomKeyHex(), validUntil: 0 }]);
  const cases: [string, number, string][] = [
    ["192.0.2.44", 5060, "192.0.2.44"],
    ["2001:db8::7", 40123, "2001:db8::7"],
    ["::1", 1, "::1"],
    ["2001:db8:1:2:3:4:5:6", 65535, "2001:db8:1:2:3:4:5:6"],
    ["::ffff:192.0.2.1", 5060, "::ffff:c000:201"],
  ];
  for (const [ip, port, formatted] of cases) {
    const token = tokens.mintDatagram(2, ip, port);
    assert.ok(looksLikeFlowToken(token), token);
    assert.equal(token.length, ip.includes(":") ? 48 : 32);
    assert.deepEqual(tokens.check(token), {
      ok: true,
      datagram: { socket: 2, hostname: formatted, port },
    });
    const altered = token.slice(0, 10) + (token[10] === "A" ? "B" : "A") + token.slice(11);
    assert.deepEqual(tokens.check(altered), { ok: false, why: "invalid" });
  }
  assert.throws(() => tokens.mintDatagram(0, "example.com", 5060), /not an IP address/);
});
