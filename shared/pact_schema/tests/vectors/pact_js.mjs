// Independent JavaScript model of the reference Pact SDK's canonical JSON,
// message hash and signed envelope. Deliberately shares nothing with the
// Python package: it is what the Python code is tested against.
import { createHash } from "node:crypto";
import nacl from "tweetnacl";
import bs58 from "bs58";

export const ENVELOPE_VERSION = "pact-envelope/1.0";

// Canonical JSON with JavaScript semantics: keys sorted by the default
// Array.prototype.sort() order (UTF-16 code units), no whitespace, strings
// and numbers exactly as JSON.stringify writes them.
export function canonicalize(value) {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      // JSON.stringify would silently turn these into "null"; the SDK never
      // produces them, so refuse rather than invent a vector.
      if (!Number.isFinite(value)) throw new Error(`non-finite number: ${value}`);
      return JSON.stringify(value); // Number#toString, except -0 -> "0"
    case "string":
      return JSON.stringify(value);
    case "object":
      if (Array.isArray(value)) return "[" + value.map(canonicalize).join(",") + "]";
      return (
        "{" +
        Object.keys(value)
          .sort()
          .map((k) => JSON.stringify(k) + ":" + canonicalize(value[k]))
          .join(",") +
        "}"
      );
    default:
      throw new Error(`not a JSON value: ${typeof value}`);
  }
}

export function utf8(str) {
  // Buffer.from would quietly replace a lone surrogate by U+FFFD; the
  // canonical form never contains one (JSON.stringify escapes them), so
  // make sure that stays true instead of hashing a silently altered string.
  if (!str.isWellFormed()) throw new Error("string is not well-formed UTF-16");
  return Buffer.from(str, "utf8");
}

export function sha256Hex(str) {
  return createHash("sha256").update(utf8(str)).digest("hex");
}

export function messageHashHex(message) {
  return sha256Hex(canonicalize(message));
}

// The reference SDK's hash_reveal commitment (exchange/commit.ts): SHA-256 of
// the UTF-8 text payload_b64 + nonce_b64 (the base64 strings, not the bytes).
export function computeCommitHash(payloadB64, nonceB64) {
  return createHash("sha256").update(payloadB64 + nonceB64, "utf8").digest("hex");
}

export function verifyReveal(commitHashHex, payloadB64, nonceB64) {
  return computeCommitHash(payloadB64, nonceB64).toLowerCase() === String(commitHashHex).toLowerCase();
}

export function keyPairFromSeedHex(seedHex) {
  const seed = Buffer.from(seedHex, "hex");
  if (seed.length !== 32) throw new Error("seed must be 32 bytes");
  return nacl.sign.keyPair.fromSeed(new Uint8Array(seed));
}

export function signEnvelope(message, keyPair, signedAtMs) {
  const hashHex = messageHashHex(message);
  const signature = nacl.sign.detached(Buffer.from(hashHex, "hex"), keyPair.secretKey);
  return {
    envelope_version: ENVELOPE_VERSION,
    message,
    message_hash_hex: hashHex,
    signer_public_key_b58: bs58.encode(keyPair.publicKey),
    signature_b58: bs58.encode(signature),
    signed_at_ms: signedAtMs,
  };
}

function decodeB58(str, expectedLength) {
  if (typeof str !== "string") return null;
  let bytes;
  try {
    bytes = bs58.decode(str);
  } catch {
    return null;
  }
  return bytes.length === expectedLength ? bytes : null;
}

// Returns { ok, reason, computed_hash_hex }. reason is null when ok, else one
// of: malformed_envelope, unsupported_envelope_version, hash_mismatch,
// bad_public_key, bad_signature_encoding, bad_signature.
export function verifyEnvelope(env) {
  const fail = (reason, computed = null) => ({ ok: false, reason, computed_hash_hex: computed });
  if (env === null || typeof env !== "object" || Array.isArray(env)) return fail("malformed_envelope");
  if (env.envelope_version !== ENVELOPE_VERSION) return fail("unsupported_envelope_version");
  if (env.message === null || typeof env.message !== "object" || Array.isArray(env.message)) {
    return fail("malformed_envelope");
  }
  if (!Number.isSafeInteger(env.signed_at_ms)) return fail("malformed_envelope");

  let computed;
  try {
    computed = messageHashHex(env.message);
  } catch {
    return fail("malformed_envelope");
  }
  const claimed = env.message_hash_hex;
  if (typeof claimed !== "string" || !/^[0-9a-fA-F]{64}$/.test(claimed)) {
    return fail("malformed_envelope", computed);
  }
  // Hex case carries no information, so the comparison ignores it.
  if (claimed.toLowerCase() !== computed) return fail("hash_mismatch", computed);

  const publicKey = decodeB58(env.signer_public_key_b58, 32);
  if (!publicKey) return fail("bad_public_key", computed);
  const signature = decodeB58(env.signature_b58, 64);
  if (!signature) return fail("bad_signature_encoding", computed);

  const ok = nacl.sign.detached.verify(Buffer.from(computed, "hex"), signature, publicKey);
  return ok ? { ok: true, reason: null, computed_hash_hex: computed } : fail("bad_signature", computed);
}
