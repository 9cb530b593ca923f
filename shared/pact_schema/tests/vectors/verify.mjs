// Verifies envelopes the way the JS SDK would.
// Usage: node verify.mjs ENVELOPES.json   (a JSON array of envelope objects)
// Prints one line: {"results":[{"index":i,"ok":bool,"reason":null|string,"computed_hash_hex":...}]}
import { readFileSync } from "node:fs";
import { verifyEnvelope } from "./pact_js.mjs";

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
const results = envelopes.map((envelope, index) => ({ index, ...verifyEnvelope(envelope) }));
process.stdout.write(JSON.stringify({ results }) + "\n");
