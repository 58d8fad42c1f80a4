import assert from "node:assert/strict";
import {
  ClientDomainTable,
  configuredListener,
  domainsForListener,
  ListenerDomains,
  parseMatch,
} from "./domains.ts";
import type { ListenerId } from "./settings.ts";

interface D {
  name: string;
  listener: ListenerId | undefined;
  serverNames: string[];
}

const L1 = { hostname: "127.0.0.1", port: 5061 };
const L2 = { hostname: "::1", port: 5061 };

Deno.test("server domains: exact name, one-label wildcard, default for no SNI and unknown names", () => {
  const domains: D[] = [
    { name: "a", listener: L1, serverNames: ["a.example.com"] },
    { name: "wild", listener: undefined, serverNames: ["*.example.com"] },
    { name: "default", listener: undefined, serverNames: [] },
    { name: "other", listener: L2, serverNames: ["a.example.com"] },
  ];
  const table = new ListenerDomains(domainsForListener(domains, L1));
  assert.deepEqual(table.domains.map((d) => d.name), ["a", "wild", "default"]);
  assert.equal(table.select("a.example.com").name, "a");
  assert.equal(table.select("A.Example.COM.").name, "a", "case and trailing dot");
  assert.equal(table.select("b.example.com").name, "wild");
  assert.equal(table.select("x.b.example.com").name, "default", "a wildcard is one label");
  assert.equal(table.select("example.com").name, "default");
  assert.equal(table.select(undefined).name, "default");
  assert.equal(table.select("").name, "default");
  assert.equal(table.select(false).name, "default");
  const other = new ListenerDomains(domainsForListener(domains, L2));
  assert.equal(other.select("a.example.com").name, "other", "listener-specific first");
});

Deno.test("server domains: without a domain lacking names, the listener's first is the default", () => {
  const table = new ListenerDomains<D>([
    { name: "first", listener: L1, serverNames: ["a.example"] },
    { name: "second", listener: undefined, serverNames: ["b.example"] },
  ]);
  assert.equal(table.select(undefined).name, "first");
  assert.equal(table.select("c.example").name, "first");
  assert.equal(table.select("b.example").name, "second");
  assert.equal(domainsForListener<D>([{ ...table.domains[0] }], L2).length, 0);
});

Deno.test("configured listener: the same address, or the port-0 listener of that host", () => {
  const listeners = [{ hostname: "127.0.0.1", port: 0 }, { hostname: "::1", port: 5061 }];
  assert.deepEqual(configuredListener(listeners, { hostname: "127.0.0.1", port: 40000 }), {
    hostname: "127.0.0.1",
    port: 0,
  });
  assert.deepEqual(configuredListener(listeners, { hostname: "[::1]", port: 5061 }), listeners[1]);
  assert.deepEqual(configuredListener(listeners, { hostname: "10.0.0.1", port: 1 }), {
    hostname: "10.0.0.1",
    port: 1,
  });
});

Deno.test("client domains: host:port, host, wildcard, default, then the fallback", () => {
  const d = (name: string, match: string[]) => ({ name, match });
  const fallback = d("fallback", []);
  const table = new ClientDomainTable([
    d("trunk", ["10.0.0.5:5061", "[2001:db8::1]:5061"]),
    d("host", ["10.0.0.5", "sip.example.com", "2001:db8::2"]),
    d("wild", ["*.example.com"]),
    d("default", ["*"]),
  ], fallback);
  assert.equal(table.select("10.0.0.5", 5061).name, "trunk");
  assert.equal(table.select("10.0.0.5", 5062).name, "host");
  assert.equal(table.select("2001:db8::1", 5061).name, "trunk");
  assert.equal(table.select("2001:DB8::2", 5061).name, "host");
  assert.equal(table.select("SIP.example.com", 5061).name, "host");
  assert.equal(table.select("pbx.example.com", 5061).name, "wild");
  assert.equal(table.select("a.pbx.example.com", 5061).name, "default");
  assert.equal(table.select("elsewhere.net", 5061).name, "default");
  assert.equal(
    new ClientDomainTable([d("x", ["a.net"])], fallback).select("b.net", 1).name,
    "fallback",
  );
  assert.equal(new ClientDomainTable([d("empty", [])], fallback).select("b.net", 1).name, "empty");
});

Deno.test("client domain patterns parse", () => {
  assert.deepEqual(parseMatch("*"), { kind: "default" });
  assert.deepEqual(parseMatch("*.Example.com"), { kind: "wildcard", suffix: "example.com" });
  assert.deepEqual(parseMatch("h.net:5061"), { kind: "host", host: "h.net", port: 5061 });
  assert.deepEqual(parseMatch("::1"), { kind: "host", host: "::1", port: undefined });
  assert.deepEqual(parseMatch("[::1]:5061"), { kind: "host", host: "::1", port: 5061 });
});
