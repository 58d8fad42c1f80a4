import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { generateSelfSigned } from "./self_signed.ts";

Deno.test("self-signed: a v3 certificate with the asked names, signed by its own key", () => {
  const { certificate, privateKey } = generateSelfSigned({
    commonName: "sipedge test",
    dnsNames: ["localhost", "sip.example.com"],
    ipAddresses: ["127.0.0.1", "::1", "2001:db8::5"],
    days: 10,
  });
  const cert = new X509Certificate(certificate);
  assert.equal(cert.subject, "O=sipedge\nCN=sipedge test");
  assert.equal(cert.issuer, cert.subject);
  assert.equal(
    cert.subjectAltName,
    "DNS:localhost, DNS:sip.example.com, IP Address:127.0.0.1, IP Address:::1, IP Address:2001:db8::5",
  );
  assert.ok(cert.verify(cert.publicKey), "self-signed signature verifies");
  assert.ok(cert.checkPrivateKey(createPrivateKey(privateKey)));
  assert.equal(cert.ca, false);
  const days = (cert.validToDate.getTime() - cert.validFromDate.getTime()) / 86_400_000;
  assert.equal(days, 10);
  assert.ok(cert.validFromDate.getTime() < Date.now(), "valid already (clock skew margin)");
  assert.ok(cert.checkHost("sip.example.com"));
  assert.ok(cert.checkIP("127.0.0.1"));
  assert.equal(cert.checkHost("other.example.com"), undefined);
});

Deno.test("self-signed: every call makes a new key and serial", () => {
  const a = new X509Certificate(generateSelfSigned({ commonName: "x" }).certificate);
  const b = new X509Certificate(generateSelfSigned({ commonName: "x" }).certificate);
  assert.notEqual(a.serialNumber, b.serialNumber);
  assert.notEqual(a.fingerprint256, b.fingerprint256);
  assert.equal(a.subjectAltName, undefined);
});

Deno.test("self-signed: dates after 2049 are GeneralizedTime", () => {
  const cert = new X509Certificate(
    generateSelfSigned({ commonName: "late", notBefore: new Date("2049-12-31T00:00:00Z"), days: 2 })
      .certificate,
  );
  assert.equal(cert.validToDate.toISOString(), "2050-01-02T00:00:00.000Z");
});
