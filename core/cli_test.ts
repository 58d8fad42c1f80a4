/** Tests of command-line parsing. */

import assert from "node:assert/strict";
import { parseCli, USAGE } from "./cli.ts";

const DEFAULTS = { listen: [], checkConfig: false, version: false, help: false };

function fails(args: string[], message: RegExp) {
  assert.throws(() => parseCli(args), (error) => {
    assert.ok(error instanceof Error);
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("parseCli: no arguments", () => {
  assert.deepEqual(parseCli([]), DEFAULTS);
});

Deno.test("parseCli: every flag, space-separated values", () => {
  assert.deepEqual(
    parseCli([
      "--config",
      "/etc/sipedge.toml",
      "--listen",
      "tcp:127.0.0.1:5060",
      "--listen",
      "tcp:[::1]:5062",
      "--forward",
      "sip:10.0.0.5:5060;transport=tcp",
      "--workers",
      "4",
      "--log-level",
      "debug",
      "--check-config",
      "--version",
      "--help",
    ]),
    {
      config: "/etc/sipedge.toml",
      listen: ["tcp:127.0.0.1:5060", "tcp:[::1]:5062"],
      forward: "sip:10.0.0.5:5060;transport=tcp",
      workers: 4,
      logLevel: "debug",
      checkConfig: true,
      version: true,
      help: true,
    },
  );
});

Deno.test("parseCli: --flag=value", () => {
  assert.deepEqual(
    parseCli([
      "--config=my.toml",
      "--listen=tcp:0.0.0.0:0",
      "--forward=sips:up.example.com",
      "--workers=0",
      "--log-level=trace",
    ]),
    {
      ...DEFAULTS,
      config: "my.toml",
      listen: ["tcp:0.0.0.0:0"],
      forward: "sips:up.example.com",
      workers: 0,
      logLevel: "trace",
    },
  );
});

Deno.test("parseCli: a value may contain `=`", () => {
  assert.equal(parseCli(["--config=a=b.toml"]).config, "a=b.toml");
  assert.equal(
    parseCli(["--forward=sip:10.0.0.5;transport=tcp"]).forward,
    "sip:10.0.0.5;transport=tcp",
  );
});

Deno.test("parseCli: -h is --help", () => {
  assert.deepEqual(parseCli(["-h"]), { ...DEFAULTS, help: true });
});

Deno.test("parseCli: the last --config / --workers wins, --listen accumulates", () => {
  const options = parseCli([
    "--config",
    "a",
    "--config",
    "b",
    "--workers",
    "1",
    "--workers=2",
    "--listen=tcp:127.0.0.1:1",
    "--listen",
    "tcp:127.0.0.1:2",
  ]);
  assert.equal(options.config, "b");
  assert.equal(options.workers, 2);
  assert.deepEqual(options.listen, ["tcp:127.0.0.1:1", "tcp:127.0.0.1:2"]);
});

Deno.test("parseCli: bad values are errors naming the option", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--listen", "127.0.0.1:5060"], /^--listen 127\.0\.0\.1:5060: expected TRANSPORT:HOST:PORT/],
    [["--listen=tcp:127.0.0.1"], /^--listen tcp:127\.0\.0\.1: /],
    [["--listen", "tcp:127.0.0.1:70000"], /^--listen /],
    [["--forward", "http://example.com"], /^--forward http:\/\/example\.com: expected a sip: URI/],
    [["--forward=10.0.0.5:5060"], /^--forward 10\.0\.0\.5:5060: /],
    [["--workers", "x"], /^--workers x: expected a number from 0 to 256$/],
    [["--workers", "257"], /^--workers 257: /],
    [["--workers", "-1"], /^--workers -1: /],
    [["--workers", "1000"], /^--workers 1000: /],
    [["--workers="], /^--workers : /],
    [["--log-level", "loud"], /^--log-level loud: expected trace, debug/],
    [["--log-level=INFO"], /^--log-level INFO: /],
    [["--log-format", "xml"], /^--log-format xml: expected text or json$/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), () => fails(args, message));
  }
});

Deno.test("parseCli: a missing value is an error", async (t) => {
  for (
    const flag of ["--config", "--listen", "--forward", "--workers", "--log-level", "--log-format"]
  ) {
    await t.step(flag, () => fails([flag], new RegExp(`^${flag} needs a value$`)));
  }
});

Deno.test("parseCli: unknown options", async (t) => {
  for (const arg of ["--nope", "-x", "config.toml", "--", "-h=1", "--Config=x"]) {
    await t.step(
      arg,
      () => fails([arg], new RegExp(`^unknown option ${escape(arg)} \\(see --help\\)$`)),
    );
  }
});

Deno.test("parseCli: USAGE mentions every option", () => {
  for (
    const flag of [
      "--config",
      "--listen",
      "--forward",
      "--workers",
      "--log-level",
      "--log-format",
      "--check-config",
      "--version",
      "--help",
    ]
  ) {
    assert.ok(USAGE.includes(flag), flag);
  }
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

Deno.test("parseCli: --log-format", () => {
  assert.equal(parseCli(["--log-format", "json"]).logFormat, "json");
  assert.equal(parseCli(["--log-format=text"]).logFormat, "text");
  assert.equal(parseCli([]).logFormat, undefined);
});

Deno.test("parseCli: flags without a value refuse one", () => {
  for (const arg of ["--check-config=no", "--help=x", "--version=1"]) {
    assert.throws(() => parseCli([arg]), /takes no value/, arg);
  }
});
