// A buyer written the way the reference SDK talks to an HTTP provider: plain fetch with the
// adapter client's request shapes (packages/sdk/src/adapters/http/client.ts: POST /quote,
// /commit, /reveal, /stream/chunk; a non-2xx answer is an error), envelopes signed and verified
// with tweetnacl + bs58 (the independent model in shared/pact_schema/tests/vectors/pact_js.mjs).
// Reference buyers echo no quote: the ACCEPT it signs is bare.
//
// Usage: node reference_buyer.mjs PROVIDER_A PROVIDER_B BUYER_SEED_HEX
//   quotes on replica A, ACCEPTs on replica B (the shared quote store), commits and reveals
//   on A again; prints one JSON report of everything it checked.
import {
  computeCommitHash,
  keyPairFromSeedHex,
  signEnvelope,
  verifyEnvelope,
  verifyReveal,
} from "../../../../shared/pact_schema/tests/vectors/pact_js.mjs";

async function post(baseUrl, path, body) {
  const response = await fetch(`${baseUrl}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const errorText = await response.text();
    throw new Error(`HTTP ${response.status}: ${errorText}`);
  }
  return response.json();
}

const fetchQuote = (url, req) => post(url, "/quote", req);
const fetchCommit = (url, req) => post(url, "/commit", req);
const fetchReveal = (url, req) => post(url, "/reveal", req);
const fetchStreamChunk = (url, req) => post(url, "/stream/chunk", req);

function checked(envelope, sellerId, type) {
  const result = verifyEnvelope(envelope);
  if (!result.ok) throw new Error(`${type} envelope does not verify: ${result.reason}`);
  if (envelope.signer_public_key_b58 !== sellerId) throw new Error(`${type} signer mismatch`);
  if (envelope.message.type !== type) throw new Error(`expected ${type}, got ${envelope.message.type}`);
  return envelope.message;
}

async function pact(url, envelope) {
  const response = await fetch(`${url}/pact`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(envelope),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  return response.json();
}

function bareAccept(buyer, intentId, price, now) {
  return signEnvelope(
    {
      protocol_version: "pact/1.0",
      type: "ACCEPT",
      intent_id: intentId,
      agreed_price: price,
      settlement_mode: "hash_reveal",
      proof_type: "hash_reveal",
      challenge_window_ms: 150,
      delivery_deadline_ms: now + 60000,
      sent_at_ms: now,
      expires_at_ms: now + 10000,
    },
    buyer,
    now,
  );
}

async function deliveredTrade(report, name, urlA, urlB, sellerId, buyer, intentId, ask) {
  // ACCEPT on replica B: bare, as the reference SDK builds it.
  const ack = await pact(urlB, bareAccept(buyer, intentId, ask.price, Date.now()));
  const accepted = checked(ack, sellerId, "ACCEPT");
  const delivery = accepted.delivery;
  if (!delivery || delivery.status !== "delivered") throw new Error(`${name}: not delivered`);
  // The reference session's order: /commit with the payload and nonce, then /reveal.
  const commitEnvelope = (await fetchCommit(urlA, {
    intent_id: intentId,
    payload_b64: delivery.payload_b64,
    nonce_b64: delivery.nonce_b64,
  })).envelope;
  const commit = checked(commitEnvelope, sellerId, "COMMIT");
  const revealResponse = await fetchReveal(urlA, {
    intent_id: intentId,
    payload_b64: delivery.payload_b64,
    nonce_b64: delivery.nonce_b64,
    commit_hash_hex: commit.commit_hash_hex,
  });
  const reveal = checked(revealResponse.envelope, sellerId, "REVEAL");
  report[name] = {
    intent_id: intentId,
    settlement_id: accepted.settlement.id,
    settlement_state: accepted.settlement.state,
    price: ask.price,
    commit_is_reference_rule:
      commit.commit_hash_hex === computeCommitHash(delivery.payload_b64, delivery.nonce_b64),
    reveal_ok: revealResponse.ok,
    reveal_proves_commit: verifyReveal(commit.commit_hash_hex, reveal.payload_b64, reveal.nonce_b64),
    payload: Buffer.from(reveal.payload_b64, "base64").toString("utf8"),
  };
}

async function main() {
  const [urlA, urlB, seedHex] = process.argv.slice(2);
  const buyer = keyPairFromSeedHex(seedHex);
  const report = {};

  const health = await (await fetch(`${urlA}/health`)).json();
  report.health = health;
  const sellerId = health.sellerId;

  // 1) The adapter client's quote request: an open ASK, then a bare ACCEPT for that intent id.
  const quoteIntent = `intent-${Date.now()}-q`;
  const quoted = await fetchQuote(urlA, {
    intent_id: quoteIntent,
    intent_type: "weather.data",
    max_price: 0.001,
    constraints: { latency_ms: 100, freshness_sec: 30 },
    urgent: false,
  });
  const ask = checked(quoted.envelope, sellerId, "ASK");
  report.quote = { price: ask.price, open_quote: ask.open_quote, bond_required: ask.bond_required };
  await deliveredTrade(report, "after_quote", urlA, urlB, sellerId, buyer, quoteIntent, ask);

  // 2) A signed INTENT at /pact (the reference envelope), then a bare ACCEPT.
  const intentId = `intent-${Date.now()}-i`;
  const now = Date.now();
  const intent = signEnvelope(
    {
      protocol_version: "pact/1.0",
      type: "INTENT",
      intent_id: intentId,
      intent: "weather.data",
      scope: "NYC",
      constraints: { latency_ms: 100, freshness_sec: 30 },
      max_price: 0.001,
      settlement_mode: "hash_reveal",
      urgent: false,
      sent_at_ms: now,
      expires_at_ms: now + 60000,
    },
    buyer,
    now,
  );
  report.buyer = intent.signer_public_key_b58;
  const intentAsk = checked(await pact(urlA, intent), sellerId, "ASK");
  await deliveredTrade(report, "after_intent", urlA, urlB, sellerId, buyer, intentId, intentAsk);

  // 3) What is refused: a bare ACCEPT at another price, a reveal of made-up goods, streaming.
  const lowball = await pact(urlB, bareAccept(buyer, `intent-${Date.now()}-l`, 0.00000001, Date.now()));
  report.unquoted_accept = checked(lowball, sellerId, "REJECT").code;
  try {
    await fetchReveal(urlA, {
      intent_id: quoteIntent,
      payload_b64: Buffer.from(JSON.stringify({ data: "delivered" })).toString("base64"),
      nonce_b64: Buffer.from(`nonce-${Date.now()}`).toString("base64"),
      commit_hash_hex: "00".repeat(32),
    });
    report.made_up_reveal = "answered";
  } catch (error) {
    report.made_up_reveal = error.message.slice(0, 40);
  }
  const chunk = await fetchStreamChunk(urlA, { intent_id: intentId, seq: 0, sent_at_ms: Date.now() });
  report.stream_chunk = checked(chunk.envelope, sellerId, "REJECT").code;
  process.stdout.write(JSON.stringify(report) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
