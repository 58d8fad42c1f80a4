/** Tests of finding the line of a config key in TOML text. */

import assert from "node:assert/strict";
import { locateKey } from "./locate.ts";

const TEXT = [
  /* 1 */ "# sipedge test config",
  /* 2 */ "[sipedge]",
  /* 3 */ "workers = 2",
  /* 4 */ "",
  /* 5 */ "[[listen]]",
  /* 6 */ 'address = "tcp:127.0.0.1:5060"',
  /* 7 */ "[[listen]]",
  /* 8 */ 'address="tcp:127.0.0.1:5062"',
  /* 9 */ "[ plugins.static_router ]  # comment",
  /* 10 */ '"record_route" = true',
  /* 11 */ "[[plugins.static_router.routes]]",
  /* 12 */ 'destination = "sip:a"',
  /* 13 */ "[[ plugins.static_router.routes ]]",
  /* 14 */ '  domain = "example.com"',
  /* 15 */ 'destination = "sip:b"',
  /* 16 */ "a.b.c = 1",
  /* 17 */ '[plugins."quoted.name"]',
  /* 18 */ "key = 1",
  /* 19 */ "[sip]",
  /* 20 */ "aliases = [",
  /* 21 */ '  "x=y",',
  /* 22 */ "]",
].join("\n");

Deno.test("locateKey: keys in tables", () => {
  assert.equal(locateKey(TEXT, ["sipedge", "workers"]), 3);
  assert.equal(locateKey(TEXT, ["plugins", "static_router", "record_route"]), 10);
  assert.equal(locateKey(TEXT, ["sip", "aliases"]), 20);
});

Deno.test("locateKey: tables themselves", () => {
  assert.equal(locateKey(TEXT, ["sipedge"]), 2);
  assert.equal(locateKey(TEXT, ["plugins", "static_router"]), 9);
  assert.equal(locateKey(TEXT, ["sip"]), 19);
});

Deno.test("locateKey: arrays of tables are indexed", () => {
  assert.equal(locateKey(TEXT, ["listen"]), 5);
  assert.equal(locateKey(TEXT, ["listen", 0, "address"]), 6);
  assert.equal(locateKey(TEXT, ["listen", 1, "address"]), 8);
  assert.equal(locateKey(TEXT, ["listen", 1]), 7);
  assert.equal(locateKey(TEXT, ["plugins", "static_router", "routes", 0, "destination"]), 12);
  assert.equal(locateKey(TEXT, ["plugins", "static_router", "routes", 1, "domain"]), 14);
  assert.equal(locateKey(TEXT, ["plugins", "static_router", "routes", 1, "destination"]), 15);
});

Deno.test("locateKey: dotted and quoted keys", () => {
  assert.equal(locateKey(TEXT, ["plugins", "static_router", "routes", 1, "a", "b", "c"]), 16);
  assert.equal(locateKey(TEXT, ["plugins", "quoted.name", "key"]), 18);
  assert.equal(locateKey("sipedge.workers = 3\n[sip]\n", ["sipedge", "workers"]), 1);
  assert.equal(locateKey("[a]\n'b.c'.d = 1\n", ["a", "b.c", "d"]), 2);
});

Deno.test("locateKey: a missing key gives the nearest enclosing table", () => {
  assert.equal(locateKey(TEXT, ["sipedge", "log_level"]), 2);
  assert.equal(locateKey(TEXT, ["listen", 1, "advertise"]), 7);
  assert.equal(locateKey(TEXT, ["plugins", "static_router", "routes", 0, "methods"]), 11);
  assert.equal(locateKey(TEXT, ["plugins", "static_router", "default_route"]), 9);
});

Deno.test("locateKey: nothing written → undefined", () => {
  assert.equal(locateKey(TEXT, ["nope"]), undefined);
  assert.equal(locateKey(TEXT, ["listen", 5, "address"]), 5);
  assert.equal(locateKey("", ["sipedge", "workers"]), undefined);
});

Deno.test("locateKey: comments and values are not keys", () => {
  const text = '# workers = 1\n[sipedge]\nlog_level = "workers = 2"\nworkers = 3\n';
  assert.equal(locateKey(text, ["sipedge", "workers"]), 4);
  // A string inside a multi-line array is not a key.
  assert.equal(locateKey(TEXT, ["sip", "x"]), 19);
});

Deno.test("locateKey: CRLF line endings", () => {
  assert.equal(locateKey("[sipedge]\r\nworkers = 2\r\n[sip]\r\n", ["sipedge", "workers"]), 2);
});
