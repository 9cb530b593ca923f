// Writes vectors.json: golden vectors produced by the JavaScript model of the
// Pact SDK in pact_js.mjs (tweetnacl + bs58 + node:crypto), never by our
// Python code. Run: npm ci && node generate.mjs
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import bs58 from "bs58";
import {
  canonicalize,
  computeCommitHash,
  keyPairFromSeedHex,
  messageHashHex,
  sha256Hex,
  signEnvelope,
  verifyEnvelope,
} from "./pact_js.mjs";

const here = new URL(".", import.meta.url);

// ---------------------------------------------------------------- canonical
// input_json is JSON *text*; String.raw keeps its escapes (\u0000, \ud800 ...)
// for the JSON parser to read, so the text itself stays valid JSON.
const canonicalInputs = [
  ["nested_key_sorting",
    String.raw`{ "zeta" : 1,"alpha":{"b" :[3, {"y":1,"x":2}], "a":null } ,"Beta":true, "_u":0, "10":"ten", "9":"nine", "":"empty"}`],
  ["key_prefixes_and_case",
    String.raw`{"ab":1,"a b":2,"aa":3,"A":4,"a":5,"a\u0000":6,"B":7}`],
  ["whitespace_everywhere",
    "\r\n\t { \"b\"\t:\r\n[ 1 ,2 ,\n 3 ] ,\n  \"a\" : { \"d\" : \"x y\" , \"c\" : [ ] } } \n"],
  ["array_order_kept", String.raw`[3, 1, 2, "b", "a", {"b":1,"a":2}, [2, 1]]`],
  ["non_ascii_keys_and_values",
    String.raw`{"中文":"汉字","z":"ß","é":"café","e":"e","Ω":"\u00e9\u4e2d","naïve":"Zürich"}`],
  ["astral_plane_characters",
    String.raw`{"emoji":"😀","clef":"𝄞","escaped_pair":"\ud83d\ude00","mixed":"a😀b𝄞c","🗽":"statue"}`],
  // UTF-16 order: a, 𝄞 (d834..), 😀 (d83d..), \ue000, \uff61, \uffff.
  // Code-point order would put both astral keys last.
  ["utf16_vs_codepoint_key_order",
    String.raw`{"\uff61":"halfwidth ideographic full stop","😀":"grinning face","\ue000":"private use","𝄞":"g clef","\uffff":"noncharacter","a":"ascii"}`],
  ["all_control_characters_in_value",
    '{"s":"' + Array.from({ length: 32 }, (_, i) => "\\u" + i.toString(16).padStart(4, "0")).join("") + '"}'],
  ["control_characters_in_keys",
    String.raw`{"\u001f":5,"\n":2,"\u0000":0,"\t":1,"\r":3,"\u0008":4,"\u000B":6}`],
  ["del_c1_bom_and_line_separators",
    String.raw`{"del":"\u007f","c1":"\u0080\u009f","bom":"\ufeff","ls":"\u2028","ps":"\u2029","nbsp":"\u00a0"}`],
  ["quotes_backslashes_and_slash",
    String.raw`{"q":"He said \"hi\"","bs":"C:\\dir\\file","slash":"a\/b</script>","mix":"\\\"\\","key\"with\\":true}`],
  ["lone_high_surrogate", String.raw`{"s":"\ud800"}`],
  ["lone_surrogates_assorted",
    String.raw`{"low":"\udc00","reversed_pair":"\ude00\ud83d","trailing_high":"a\ud83d","upper_escape":"\uD800x","pair_then_lone":"\ud83d\ude00\udfff"}`],
  // UTF-16 order: \ud800 < \ud83d\ude00 < \uffff (code points would put 😀 last)
  ["lone_surrogate_keys", String.raw`{"\uffff":1,"\ud83d\ude00":2,"\ud800":3,"z":4}`],
  ["top_level_true", "true"],
  ["top_level_false", " false "],
  ["top_level_null", "null"],
  ["top_level_string", String.raw`"caf\u00e9 😀"`],
  ["top_level_number", "  5.0  "],
  ["empty_object", "{ }"],
  ["empty_array", "[ ]"],
  ["nested_empties", String.raw`{"b":[],"a":{},"c":[{},[],[[]],{"x":{}}]}`],
  ["mixed_array", String.raw`[1, "two", true, false, null, {"b":1,"a":[]}, [], 3.0, -0.5, "\u00e9"]`],
  ["booleans_and_null_in_object", String.raw`{"t":true,"f":false,"n":null}`],
];

// Each number is its own case, written as it might arrive on the wire.
const numberLiterals = [
  ["5.0", "five_point_zero"],
  ["1.0", "one_point_zero"],
  ["0", "zero"],
  ["-0", "negative_zero"],
  ["-0.0", "negative_zero_float"],
  ["0.00008", "small_price"],
  ["0.0002", "max_price"],
  ["0.00016", "bond"],
  ["0.000001", "one_e_minus_6_decimal"],
  ["0.0000001", "one_e_minus_7_decimal"],
  ["1e-7", "one_e_minus_7"],
  ["2.5e-5", "exp_to_decimal"],
  ["123e-20", "exp_mantissa_normalised"],
  ["1e20", "one_e_20"],
  ["1e21", "one_e_21"],
  ["1E+21", "one_e_21_uppercase"],
  ["999999999999999999999", "rounds_up_to_1e21"],
  ["999999999999999900000", "just_below_1e21"],
  ["1e2", "exp_integer"],
  ["100.0e-2", "exp_fraction_to_integer"],
  ["1e16", "one_e_16"],
  ["0.1", "point_one"],
  ["0.30000000000000004", "point_one_plus_point_two"],
  ["0.3333333333333333", "one_third"],
  ["0.6666666666666666", "two_thirds"],
  ["3.14159265358979323846264338327950288", "pi_overlong_literal"],
  ["4.35", "four_thirty_five"],
  ["1.5e300", "huge"],
  ["5e-324", "min_subnormal"],
  ["2.2250738585072014e-308", "min_normal"],
  ["1.7976931348623157e308", "max_double"],
  ["123456789012345680000", "large_integer_exact_double"],
  ["12345678901234567890", "integer_beyond_2_53"],
  ["9007199254740992", "two_pow_53"],
  ["9007199254740993", "two_pow_53_plus_one"],
  ["9007199254740991", "max_safe_integer"],
  ["-42", "negative_integer"],
  ["-1.5", "negative_fraction"],
  ["-0.00008", "negative_small"],
  ["-1e-7", "negative_one_e_minus_7"],
  ["-1e21", "negative_one_e_21"],
  ["-1.7976931348623157e308", "negative_max_double"],
];
for (const [literal, name] of numberLiterals) {
  canonicalInputs.push([`number_${name}`, `{ "n" :  ${literal} }`]);
}
canonicalInputs.push([
  "numbers_in_one_array",
  "[" + numberLiterals.map(([literal]) => literal).join(" , ") + "]",
]);

const canonical = canonicalInputs.map(([name, inputJson]) => {
  const text = canonicalize(JSON.parse(inputJson));
  return { name, input_json: inputJson, canonical: text, sha256_hex: sha256Hex(text) };
});

// ---------------------------------------------------------------- envelopes
const seedHex = (first) =>
  Buffer.from(Array.from({ length: 32 }, (_, i) => first + i)).toString("hex");

const signers = {};
for (const [name, first] of [["buyer", 0x01], ["seller", 0x21]]) {
  const keyPair = keyPairFromSeedHex(seedHex(first));
  signers[name] = {
    name,
    seed_hex: seedHex(first),
    public_key_b58: bs58.encode(keyPair.publicKey),
    public_key_hex: Buffer.from(keyPair.publicKey).toString("hex"),
    keyPair,
  };
}

const T0 = 1735689600000; // 2025-01-01T00:00:00Z

const intentStringScope = {
  protocol_version: "pact/1.0",
  type: "INTENT",
  intent_id: "intent-7f3c2a9e-4b1d-4c3e-9f00-6a5b4c3d2e1f",
  intent: "weather.data",
  scope: "NYC 🗽 Zürich",
  constraints: { latency_ms: 50, freshness_sec: 10 },
  max_price: 0.0002,
  settlement_mode: "hash_reveal",
  sent_at_ms: T0,
  expires_at_ms: T0 + 60000,
};

const intentObjectScope = {
  protocol_version: "pact/1.0",
  type: "INTENT",
  intent_id: "intent-object-scope-1",
  intent: "weather.data",
  scope: {
    city: "Zürich",
    country: "CH",
    label: "Zürich 🏔️ / NYC 🗽",
    bbox: [8.448, 47.32, 8.625, 47.434],
    fields: ["temp_c", "wind_kph", "précipitation"],
  },
  constraints: { freshness_sec: 5, latency_ms: 200 },
  max_price: 0.0000001, // canonical form "1e-7"
  settlement_mode: "hash_reveal",
  sent_at_ms: T0 + 1000,
  expires_at_ms: T0 + 1000 + 30000,
};

const askSentAt = T0 + 150;
const ask = {
  protocol_version: "pact/1.0",
  type: "ASK",
  intent_id: "intent-7f3c2a9e-4b1d-4c3e-9f00-6a5b4c3d2e1f",
  price: 0.00008,
  unit: "request",
  latency_ms: 40,
  valid_for_ms: 20000,
  bond_required: 0.00016,
  sent_at_ms: askSentAt,
  expires_at_ms: askSentAt + 20000,
};

const envelopeSpecs = [
  ["intent_string_scope", "buyer", intentStringScope, T0 + 5],
  ["intent_object_scope", "buyer", intentObjectScope, T0 + 1005],
  ["ask", "seller", ask, askSentAt + 3],
];

const envelopes = [];
const byName = {};
function addEnvelope(name, signerName, message, signedAtMs) {
  const signer = signers[signerName];
  const envelope = signEnvelope(message, signer.keyPair, signedAtMs);
  byName[name] = envelope;
  envelopes.push({
    name,
    signer: signerName,
    seed_hex: signer.seed_hex,
    public_key_b58: signer.public_key_b58,
    canonical_message: canonicalize(message),
    envelope,
  });
}
for (const spec of envelopeSpecs) addEnvelope(...spec);

const acceptSentAt = T0 + 400;
addEnvelope(
  "accept_with_nested_quote",
  "buyer",
  {
    protocol_version: "pact/1.0",
    type: "ACCEPT",
    intent_id: "intent-7f3c2a9e-4b1d-4c3e-9f00-6a5b4c3d2e1f",
    agreed_price: 0.00008,
    settlement_mode: "hash_reveal",
    proof_type: "hash_reveal",
    challenge_window_ms: 150,
    delivery_deadline_ms: acceptSentAt + 5000,
    sent_at_ms: acceptSentAt,
    expires_at_ms: acceptSentAt + 10000,
    // Not part of the known schema: must be carried and hashed as-is.
    quote: structuredClone(byName.ask),
  },
  acceptSentAt + 2,
);

// ---------------------------------------------------------------- commit / reveal
// A seller's COMMIT and REVEAL made the reference way: the commitment hashes the
// two base64 texts. The payload has non-ASCII JSON and the nonce is 16 random-looking
// bytes, so hashing the decoded bytes instead would give a different digest.
const revealPayloadB64 = Buffer.from(
  JSON.stringify({ city: "Zürich", temp_c: 21.5, note: "🗽 & ünïcode" }),
  "utf8",
).toString("base64");
const revealNonceB64 = Buffer.from(
  Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff),
).toString("base64");
const commitHash = computeCommitHash(revealPayloadB64, revealNonceB64);
const commitSentAt = T0 + 600;
addEnvelope(
  "commit",
  "seller",
  {
    protocol_version: "pact/1.0",
    type: "COMMIT",
    intent_id: "intent-commit-reveal-1",
    commit_hash_hex: commitHash,
    sent_at_ms: commitSentAt,
    expires_at_ms: commitSentAt + 60000,
  },
  commitSentAt + 1,
);
addEnvelope(
  "reveal",
  "seller",
  {
    protocol_version: "pact/1.0",
    type: "REVEAL",
    intent_id: "intent-commit-reveal-1",
    payload_b64: revealPayloadB64,
    nonce_b64: revealNonceB64,
    sent_at_ms: commitSentAt + 50,
    expires_at_ms: commitSentAt + 50 + 60000,
  },
  commitSentAt + 51,
);
const commitReveal = [
  {
    name: "reference_rule",
    payload_b64: revealPayloadB64,
    nonce_b64: revealNonceB64,
    commit_hash_hex: commitHash,
    decoded_bytes_sha256_hex: createHash("sha256")
      .update(Buffer.concat([
        Buffer.from(revealPayloadB64, "base64"),
        Buffer.from(revealNonceB64, "base64"),
      ]))
      .digest("hex"),
  },
  {
    name: "empty_payload",
    payload_b64: "",
    nonce_b64: "AAAAAAAAAAAAAAAAAAAAAA==",
    commit_hash_hex: computeCommitHash("", "AAAAAAAAAAAAAAAAAAAAAA=="),
  },
];

// ---------------------------------------------------------------- streaming
// The reference's STREAM_START / STREAM_CHUNK / STREAM_STOP (exchange/streaming.ts,
// provider-adapter handlers.ts) and our buyer-signed cumulative STREAM_VOUCHER.
const streamIntent = "intent-stream-1";
const streamAt = T0 + 1000;
addEnvelope(
  "stream_start",
  "buyer",
  {
    protocol_version: "pact/1.0",
    type: "STREAM_START",
    intent_id: streamIntent,
    agreed_price: 0.05,
    tick_ms: 100,
    sent_at_ms: streamAt,
    expires_at_ms: streamAt + 300000,
  },
  streamAt,
);
addEnvelope(
  "stream_chunk",
  "seller",
  {
    protocol_version: "pact/1.0",
    type: "STREAM_CHUNK",
    intent_id: streamIntent,
    seq: 0,
    chunk_b64: Buffer.from([0]).toString("base64"),
    sent_at_ms: streamAt + 5,
    expires_at_ms: streamAt + 5 + 10000,
  },
  streamAt + 5,
);
addEnvelope(
  "stream_voucher",
  "buyer",
  {
    protocol_version: "pact/1.0",
    type: "STREAM_VOUCHER",
    intent_id: streamIntent,
    buyer_agent_id: signers.buyer.public_key_b58,
    seller_agent_id: signers.seller.public_key_b58,
    ticks: 3,
    paid_amount: 0.003, // 3 ticks of 0.05 / 50 planned ticks
    seq: 3,
    sent_at_ms: streamAt + 310,
  },
  streamAt + 310,
);
addEnvelope(
  "stream_stop",
  "buyer",
  {
    protocol_version: "pact/1.0",
    type: "STREAM_STOP",
    intent_id: streamIntent,
    by: "buyer",
    reason: "enough data",
    sent_at_ms: streamAt + 320,
    expires_at_ms: streamAt + 320 + 300000,
  },
  streamAt + 320,
);

// ---------------------------------------------------------------- tampered
const clone = (v) => structuredClone(v);
const base = byName.intent_string_scope;
const tampered = [];
function addTampered(name, baseName, change, envelope, valid, reason) {
  tampered.push({ name, base: baseName, change, valid, reason, envelope });
}

{
  const env = clone(base);
  env.message.max_price = 0.0003;
  addTampered("message_field_changed", "intent_string_scope",
    "message.max_price 0.0002 -> 0.0003; hash and signature left as they were",
    env, false, "hash_mismatch");
}
{
  const env = clone(base);
  env.message.max_price = 0.0003;
  env.message_hash_hex = messageHashHex(env.message);
  addTampered("hash_recomputed_signature_old", "intent_string_scope",
    "message.max_price 0.0002 -> 0.0003 and message_hash_hex recomputed; signature is over the old hash",
    env, false, "bad_signature");
}
{
  const env = clone(base);
  env.signer_public_key_b58 = signers.seller.public_key_b58;
  addTampered("signer_key_swapped", "intent_string_scope",
    "signer_public_key_b58 replaced by the seller's key (signature is the buyer's)",
    env, false, "bad_signature");
}
{
  const env = clone(base);
  const sig = bs58.decode(env.signature_b58);
  sig[0] ^= 0x01;
  env.signature_b58 = bs58.encode(sig);
  addTampered("signature_byte_flipped", "intent_string_scope",
    "lowest bit of signature byte 0 flipped, re-encoded as base58",
    env, false, "bad_signature");
}
{
  const env = clone(base);
  env.envelope_version = "pact-envelope/1.1";
  addTampered("envelope_version_changed", "intent_string_scope",
    "envelope_version pact-envelope/1.0 -> pact-envelope/1.1",
    env, false, "unsupported_envelope_version");
}
{
  const env = clone(byName.accept_with_nested_quote);
  env.message.quote.message.price = 0.00001;
  addTampered("nested_quote_changed", "accept_with_nested_quote",
    "message.quote.message.price 0.00008 -> 0.00001 inside the unknown nested field",
    env, false, "hash_mismatch");
}
{
  const env = clone(base);
  env.message_hash_hex = env.message_hash_hex.toUpperCase();
  addTampered("uppercase_hash_hex", "intent_string_scope",
    "message_hash_hex written in uppercase; the comparison ignores hex case",
    env, true, null);
}
{
  const env = clone(base);
  // Same message, keys inserted in reverse order: canonicalisation must undo it.
  env.message = Object.fromEntries(Object.entries(env.message).reverse());
  env.message.constraints = { freshness_sec: 10, latency_ms: 50 };
  addTampered("message_keys_reordered", "intent_string_scope",
    "message keys written in a different order (same content)",
    env, true, null);
}
{
  const env = clone(base);
  env.signed_at_ms += 1;
  addTampered("signed_at_ms_changed", "intent_string_scope",
    "signed_at_ms + 1: it lies outside the signed hash, so the JS SDK still verifies it",
    env, true, null);
}

// Every vector must say what the JS verifier says, or the generator is wrong.
for (const e of envelopes) {
  const r = verifyEnvelope(e.envelope);
  if (!r.ok) throw new Error(`good envelope ${e.name} failed: ${r.reason}`);
}
for (const t of tampered) {
  const r = verifyEnvelope(t.envelope);
  if (r.ok !== t.valid || r.reason !== t.reason) {
    throw new Error(`tampered ${t.name}: expected ${t.valid}/${t.reason}, got ${r.ok}/${r.reason}`);
  }
}

const pkg = JSON.parse(readFileSync(new URL("package.json", here), "utf8"));
const vectors = {
  description:
    "Golden vectors from an independent JavaScript model of the Pact SDK " +
    "(generate.mjs / pact_js.mjs). Do not edit by hand; regenerate.",
  libraries: pkg.dependencies,
  envelope_version: "pact-envelope/1.0",
  signers: Object.values(signers).map(({ keyPair, ...rest }) => rest),
  canonical,
  envelopes,
  commit_reveal: commitReveal,
  tampered,
};
writeFileSync(new URL("vectors.json", here), JSON.stringify(vectors, null, 2) + "\n");
console.log(
  `wrote vectors.json: ${canonical.length} canonical, ${envelopes.length} envelopes, ` +
    `${commitReveal.length} commit/reveal, ${tampered.length} tampered`,
);
