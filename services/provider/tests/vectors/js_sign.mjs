// Signs pact messages *as JSON text* with the independent JavaScript model of the SDK
// (shared/pact_schema/tests/vectors/pact_js.mjs: JSON.parse, JS canonical JSON, tweetnacl,
// bs58). The message text is kept verbatim in the body, so the provider sees numbers and
// escapes exactly as a JavaScript buyer may write them (2e-4, 4.0e1, \ud83d\uddfd, ...).
//
// Usage: node js_sign.mjs < requests.json
//   stdin:  [{"seed_hex": "...", "message_text": "{...}", "signed_at_ms": 0}, ...]
//   stdout: ["<envelope body text>", ...]
import { readFileSync } from "node:fs";
import { keyPairFromSeedHex, signEnvelope } from "../../../../shared/pact_schema/tests/vectors/pact_js.mjs";

export function signText(seedHex, messageText, signedAtMs) {
  const message = JSON.parse(messageText);
  const envelope = signEnvelope(message, keyPairFromSeedHex(seedHex), signedAtMs);
  return (
    '{"envelope_version":' + JSON.stringify(envelope.envelope_version) +
    ',"message":' + messageText +
    ',"message_hash_hex":' + JSON.stringify(envelope.message_hash_hex) +
    ',"signer_public_key_b58":' + JSON.stringify(envelope.signer_public_key_b58) +
    ',"signature_b58":' + JSON.stringify(envelope.signature_b58) +
    ',"signed_at_ms":' + JSON.stringify(envelope.signed_at_ms) + "}"
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const requests = JSON.parse(readFileSync(0, "utf8"));
  const bodies = requests.map((r) => signText(r.seed_hex, r.message_text, r.signed_at_ms));
  process.stdout.write(JSON.stringify(bodies));
}
