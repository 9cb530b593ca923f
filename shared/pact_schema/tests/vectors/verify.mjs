// Verifies envelopes the way the JS SDK would.
// Usage: node verify.mjs ENVELOPES.json   (a JSON array of envelope objects)
// Prints one line: {"results":[{"index":i,"ok":bool,"reason":null|string,"computed_hash_hex":...}]}
// A REVEAL's result also says "reveal_matches_commit": whether it proves some COMMIT in the
// same array under the reference rule sha256(payload_b64 + nonce_b64) (null: no COMMIT given).
import { readFileSync } from "node:fs";
import { verifyEnvelope, verifyReveal } from "./pact_js.mjs";

const path = process.argv[2];
if (!path) {
  console.error("usage: node verify.mjs ENVELOPES.json");
  process.exit(2);
}
const envelopes = JSON.parse(readFileSync(path, "utf8"));
if (!Array.isArray(envelopes)) {
  console.error("input must be a JSON array of envelopes");
  process.exit(2);
}
const commits = envelopes
  .filter((e) => e?.message?.type === "COMMIT")
  .map((e) => e.message.commit_hash_hex);
const results = envelopes.map((envelope, index) => {
  const result = { index, ...verifyEnvelope(envelope) };
  if (envelope?.message?.type === "REVEAL") {
    const { payload_b64: payload, nonce_b64: nonce } = envelope.message;
    result.reveal_matches_commit = commits.length
      ? commits.some((hash) => verifyReveal(hash, payload, nonce))
      : null;
  }
  return result;
});
process.stdout.write(JSON.stringify({ results }) + "\n");
