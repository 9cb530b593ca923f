// Re-checks vectors.json without pact_js.mjs, tweetnacl's verifier or bs58:
// a hand-written canonicaliser, node:crypto Ed25519, a BigInt base58 codec,
// hand-written expectations for the facts the SDK documents, and verify.mjs
// run as a subprocess. Run: node selfcheck.mjs
import { createHash, createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const here = fileURLToPath(new URL(".", import.meta.url));
const vectors = JSON.parse(readFileSync(join(here, "vectors.json"), "utf8"));

// --- second canonicaliser: no JSON.stringify, explicit code-unit comparison
function quote(s) {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const short = { 0x08: "\\b", 0x09: "\\t", 0x0a: "\\n", 0x0c: "\\f", 0x0d: "\\r", 0x22: '\\"', 0x5c: "\\\\" }[c];
    if (short) out += short;
    else if (c < 0x20) out += "\\u" + c.toString(16).padStart(4, "0");
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      out += s[i] + s[i + 1];
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) out += "\\u" + c.toString(16);
    else out += s[i];
  }
  return out + '"';
}
function compareCodeUnits(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = a.charCodeAt(i) - b.charCodeAt(i);
    if (d) return d;
  }
  return a.length - b.length;
}
function canon2(v) {
  if (v === null || typeof v === "boolean") return String(v);
  if (typeof v === "number") return Object.is(v, -0) ? "0" : v.toString();
  if (typeof v === "string") return quote(v);
  if (Array.isArray(v)) return "[" + v.map(canon2).join(",") + "]";
  return "{" + Object.keys(v).sort(compareCodeUnits).map((k) => quote(k) + ":" + canon2(v[k])).join(",") + "}";
}
const sha256 = (s) => createHash("sha256").update(s, "utf8").digest("hex");

const byName = Object.fromEntries(vectors.canonical.map((c) => [c.name, c]));
for (const c of vectors.canonical) {
  const again = canon2(JSON.parse(c.input_json));
  assert.equal(again, c.canonical, c.name);
  assert.equal(sha256(c.canonical), c.sha256_hex, c.name);
  assert.ok(c.canonical.isWellFormed(), c.name);
}

// --- the documented facts, written out by hand
const expectNumber = {
  five_point_zero: "5", small_price: "0.00008", one_e_minus_6_decimal: "0.000001",
  one_e_minus_7: "1e-7", one_e_21: "1e+21", one_e_20: "100000000000000000000",
  negative_zero: "0", point_one: "0.1", huge: "1.5e+300", min_subnormal: "5e-324",
  max_double: "1.7976931348623157e+308", large_integer_exact_double: "123456789012345680000",
  integer_beyond_2_53: "12345678901234567000", two_pow_53: "9007199254740992",
  negative_integer: "-42", one_third: "0.3333333333333333",
};
for (const [name, text] of Object.entries(expectNumber)) {
  assert.equal(byName[`number_${name}`].canonical, `{"n":${text}}`, name);
}
assert.equal(byName.lone_high_surrogate.canonical, String.raw`{"s":"\ud800"}`);
assert.equal(
  byName.utf16_vs_codepoint_key_order.canonical.match(/"([^"]+)":/g).map((k) => k.slice(1, -2)).join(" "),
  "a 𝄞 😀 \ue000 \uff61 \uffff",
);
assert.equal(
  byName.all_control_characters_in_value.canonical,
  '{"s":"' + String.raw`\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f` +
    String.raw`\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f"}`,
);
assert.equal(byName.del_c1_bom_and_line_separators.canonical,
  '{"bom":"\ufeff","c1":"\u0080\u009f","del":"\u007f","ls":"\u2028","nbsp":"\u00a0","ps":"\u2029"}');

// --- base58 by BigInt, Ed25519 by node:crypto (OpenSSL), not tweetnacl/bs58
const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
function b58decode(s) {
  let n = 0n;
  for (const ch of s) {
    const d = ALPHABET.indexOf(ch);
    assert.ok(d >= 0, `bad base58 char ${ch}`);
    n = n * 58n + BigInt(d);
  }
  const hex = n === 0n ? "" : n.toString(16);
  const body = Buffer.from(hex.padStart(hex.length + (hex.length % 2), "0"), "hex");
  const zeros = s.match(/^1*/)[0].length;
  return Buffer.concat([Buffer.alloc(zeros), body]);
}
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const privateKeyFromSeed = (seedHex) =>
  createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, Buffer.from(seedHex, "hex")]), format: "der", type: "pkcs8" });
const publicKeyFromRaw = (raw) =>
  createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });

for (const s of vectors.signers) {
  const jwk = createPublicKey(privateKeyFromSeed(s.seed_hex)).export({ format: "jwk" });
  assert.equal(Buffer.from(jwk.x, "base64url").toString("hex"), s.public_key_hex, s.name);
  assert.equal(b58decode(s.public_key_b58).toString("hex"), s.public_key_hex, s.name);
}
const seedByKey = Object.fromEntries(vectors.signers.map((s) => [s.public_key_b58, s.seed_hex]));

function checkEnvelope(env) {
  if (env.envelope_version !== "pact-envelope/1.0") return "unsupported_envelope_version";
  const hash = sha256(canon2(env.message));
  if (env.message_hash_hex.toLowerCase() !== hash) return "hash_mismatch";
  const ok = verify(null, Buffer.from(hash, "hex"),
    publicKeyFromRaw(b58decode(env.signer_public_key_b58)), b58decode(env.signature_b58));
  return ok ? null : "bad_signature";
}
for (const e of vectors.envelopes) {
  assert.equal(checkEnvelope(e.envelope), null, e.name);
  assert.equal(e.canonical_message, canon2(e.envelope.message), e.name);
  // Ed25519 is deterministic: OpenSSL must produce tweetnacl's exact signature.
  const sig = sign(null, Buffer.from(e.envelope.message_hash_hex, "hex"), privateKeyFromSeed(seedByKey[e.public_key_b58]));
  assert.equal(sig.toString("hex"), b58decode(e.envelope.signature_b58).toString("hex"), e.name);
}
for (const t of vectors.tampered) {
  assert.equal(checkEnvelope(t.envelope), t.reason, t.name);
  assert.equal(t.valid, t.reason === null, t.name);
}

// --- verify.mjs must agree on every envelope, good and tampered
const all = [...vectors.envelopes.map((e) => e.envelope), ...vectors.tampered.map((t) => t.envelope)];
const expected = [...vectors.envelopes.map(() => [true, null]), ...vectors.tampered.map((t) => [t.valid, t.reason])];
const file = join(mkdtempSync(join(tmpdir(), "pact-vectors-")), "envelopes.json");
writeFileSync(file, JSON.stringify(all));
const { results } = JSON.parse(execFileSync(process.execPath, [join(here, "verify.mjs"), file], { encoding: "utf8" }));
assert.deepEqual(results.map((r) => [r.ok, r.reason]), expected);

console.log(
  `selfcheck ok: ${vectors.canonical.length} canonical, ${vectors.envelopes.length} envelopes, ` +
    `${vectors.tampered.length} tampered`,
);
