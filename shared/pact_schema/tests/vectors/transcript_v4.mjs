// Independent JavaScript model of pact-transcript/4.0 as the reference tooling builds and
// replays it: genesis = sha256("<intent_id>:<created_at_ms>"), round_hash over the round without
// round_hash (content_summary included), final_hash over the transcript without final_hash,
// Ed25519 over the bytes of envelope_hash, transcript_id = "transcript-" +
// sha256(intent_id + created_at_ms). Shares nothing with the Python package.
//
//   node transcript_v4.mjs generate DIR   writes the four fixture transcripts (deterministic)
//   node transcript_v4.mjs verify FILE... prints {"results":[{file, ok, errors, warnings}]}
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import nacl from "tweetnacl";
import bs58 from "bs58";
import { canonicalize, keyPairFromSeedHex, sha256Hex, signEnvelope } from "./pact_js.mjs";

export const VERSION = "pact-transcript/4.0";

export const genesisHash = (intentId, createdAtMs) => sha256Hex(`${intentId}:${createdAtMs}`);
const without = (obj, ...keys) =>
  Object.fromEntries(Object.entries(obj).filter(([k]) => !keys.includes(k)));
export const roundHash = (round) => sha256Hex(canonicalize(without(round, "round_hash")));
export const finalHash = (t) => sha256Hex(canonicalize(without(t, "final_hash")));
const failureHash = (t) => sha256Hex(canonicalize(without(t, "final_hash", "failure_event")));

// rounds: [{type, agent, keyPair, message, signedAtMs, summary}]
export function buildTranscript({ intentId, intentType, createdAtMs, hashes, rounds, failure }) {
  const t = {
    transcript_version: VERSION,
    transcript_id: "transcript-" + sha256Hex(intentId + String(createdAtMs)),
    intent_id: intentId,
    intent_type: intentType,
    created_at_ms: createdAtMs,
    policy_hash: hashes.policy,
    strategy_hash: hashes.strategy,
    identity_snapshot_hash: hashes.identity,
    rounds: [],
  };
  let previous = genesisHash(intentId, createdAtMs);
  for (const r of rounds) {
    const envelope = signEnvelope(r.message, r.keyPair, r.signedAtMs);
    const round = {
      round_number: t.rounds.length,
      round_type: r.type,
      message_hash: envelope.message_hash_hex,
      envelope_hash: envelope.message_hash_hex,
      signature: {
        signer_public_key_b58: envelope.signer_public_key_b58,
        signature_b58: envelope.signature_b58,
        signed_at_ms: r.signedAtMs,
        scheme: "ed25519",
      },
      timestamp_ms: r.signedAtMs,
      previous_round_hash: previous,
      agent_id: r.agent,
      public_key_b58: envelope.signer_public_key_b58,
      content_summary: r.summary ?? {},
    };
    round.round_hash = previous = roundHash(round);
    t.rounds.push(round);
  }
  if (failure) {
    // The published failure fixtures carry a transcript_hash no documented rule reproduces;
    // `failure.transcript_hash` lets a fixture do the same (the replayer only warns).
    t.failure_event = {
      ...without(failure, "transcript_hash"),
      transcript_hash: failure.transcript_hash ?? failureHash(t),
    };
  }
  t.final_hash = finalHash(t);
  return t;
}

function signatureHolds(round) {
  try {
    const sig = round.signature;
    if (sig.scheme && sig.scheme !== "ed25519") return false;
    if (sig.signer_public_key_b58 !== round.public_key_b58) return false;
    return nacl.sign.detached.verify(
      Buffer.from(round.envelope_hash, "hex"),
      bs58.decode(sig.signature_b58),
      bs58.decode(round.public_key_b58),
    );
  } catch {
    return false;
  }
}

// The reference replayer's checks, in its order; the first error ends the replay.
export function replay(t) {
  const errors = [];
  const warnings = [];
  const fail = (type, message) => {
    errors.push({ type, message });
    return { ok: false, errors, warnings };
  };
  if (t?.transcript_version !== VERSION) return fail("ROUND_SEQUENCE_INVALID", "version");
  if (!Array.isArray(t.rounds) || t.rounds.length === 0) return fail("ROUND_SEQUENCE_INVALID", "no rounds");
  for (let i = 0; i < t.rounds.length; i++) {
    if (t.rounds[i].round_number !== i) return fail("ROUND_SEQUENCE_INVALID", `round ${i}`);
  }
  for (let i = 1; i < t.rounds.length; i++) {
    if (t.rounds[i].timestamp_ms < t.rounds[i - 1].timestamp_ms) {
      return fail("TIMESTAMP_NON_MONOTONIC", `round ${i}`);
    }
  }
  let previous;
  for (let i = 0; i < t.rounds.length; i++) {
    const round = t.rounds[i];
    const expected = i === 0 ? genesisHash(t.intent_id, t.created_at_ms) : previous;
    if (round.previous_round_hash !== expected) return fail("HASH_CHAIN_BROKEN", `round ${i}`);
    const computed = roundHash(round);
    if (round.round_hash && round.round_hash !== computed) {
      return fail("HASH_CHAIN_BROKEN", `round ${i} round_hash`);
    }
    if (!signatureHolds(round)) return fail("SIGNATURE_INVALID", `round ${i}`);
    previous = round.round_hash || computed;
  }
  if (t.final_hash && t.final_hash !== finalHash(t)) return fail("FINAL_HASH_MISMATCH", "final_hash");
  if (t.failure_event && t.failure_event.transcript_hash !== failureHash(t)) {
    warnings.push("failure_event.transcript_hash mismatch");
  }
  return { ok: true, errors, warnings };
}

// --- the four fixtures, as the reference publishes them (fixed keys and times) ---------------

const BUYER = keyPairFromSeedHex("b0".repeat(32));
const SELLER = keyPairFromSeedHex("5e".repeat(32));
const H = (text) => sha256Hex(text);

function message(type, intentId, sentAt, fields) {
  return {
    protocol_version: "pact/1.0",
    type,
    intent_id: intentId,
    sent_at_ms: sentAt,
    expires_at_ms: sentAt + 60000,
    ...fields,
  };
}

function intentRound(intentId, at) {
  return {
    type: "INTENT",
    agent: "buyer",
    keyPair: BUYER,
    signedAtMs: at,
    summary: { intent_type: "weather.data" },
    message: message("INTENT", intentId, at, {
      intent: "weather.data",
      scope: "NYC",
      constraints: { latency_ms: 50, freshness_sec: 10 },
      max_price: 0.0002,
      settlement_mode: "hash_reveal",
    }),
  };
}

function quoteRound(type, agent, keyPair, intentId, at, price) {
  return {
    type,
    agent,
    keyPair,
    signedAtMs: at,
    summary: { price },
    message: message(type === "COUNTER" ? "ASK" : type, intentId, at, {
      price,
      unit: "request",
      latency_ms: 50,
      valid_for_ms: 60000,
      bond_required: 0.0002,
    }),
  };
}

function acceptRound(intentId, at, price) {
  return {
    type: "ACCEPT",
    agent: "buyer",
    keyPair: BUYER,
    signedAtMs: at,
    summary: { price },
    message: message("ACCEPT", intentId, at, {
      agreed_price: price,
      settlement_mode: "hash_reveal",
      proof_type: "hash_reveal",
      challenge_window_ms: 150,
      delivery_deadline_ms: at + 30000,
    }),
  };
}

const HASHES = { policy: H("policy"), strategy: H("strategy"), identity: H("identity") };

export function fixtures() {
  const t0 = 1000000000000;
  return {
    "SUCCESS-001-simple.json": buildTranscript({
      intentId: "intent-success1-test",
      intentType: "weather.data",
      createdAtMs: t0,
      // Published with prose where two hashes belong: the replayer does not check them.
      hashes: { ...HASHES, policy: "Policy satisfied", strategy: "Verified strategy adherence" },
      rounds: [
        intentRound("intent-success1-test", t0),
        quoteRound("ASK", "seller", SELLER, "intent-success1-test", t0 + 1000, 0.00005),
        acceptRound("intent-success1-test", t0 + 2000, 0.00005),
      ],
    }),
    "SUCCESS-002-negotiated.json": buildTranscript({
      intentId: "intent-success2-test",
      intentType: "weather.data",
      createdAtMs: t0 + 1000000,
      hashes: HASHES,
      rounds: [
        intentRound("intent-success2-test", t0 + 1000000),
        quoteRound("ASK", "seller", SELLER, "intent-success2-test", t0 + 1001000, 0.0001),
        quoteRound("BID", "buyer", BUYER, "intent-success2-test", t0 + 1002000, 0.00008),
        quoteRound("COUNTER", "seller", SELLER, "intent-success2-test", t0 + 1003000, 0.00009),
        acceptRound("intent-success2-test", t0 + 1004000, 0.00009),
      ],
    }),
    "PACT-101-policy-violation.json": buildTranscript({
      intentId: "intent-pact101-test",
      intentType: "weather.data",
      createdAtMs: t0,
      hashes: HASHES,
      rounds: [
        intentRound("intent-pact101-test", t0),
        quoteRound("ASK", "seller", SELLER, "intent-pact101-test", t0 + 1000, 0.0005),
      ],
      failure: {
        code: "PACT-101",
        stage: "negotiation",
        fault_domain: "policy",
        terminality: "terminal",
        evidence_refs: ["transcript-" + sha256Hex("intent-pact101-test" + String(t0))],
        timestamp: t0 + 2000,
        transcript_hash: H("not derivable from the transcript"),
      },
    }),
    "PACT-404-settlement-timeout.json": buildTranscript({
      intentId: "intent-pact404-test",
      intentType: "weather.data",
      createdAtMs: t0,
      hashes: HASHES,
      rounds: [
        intentRound("intent-pact404-test", t0),
        quoteRound("ASK", "seller", SELLER, "intent-pact404-test", t0 + 1000, 0.00005),
        acceptRound("intent-pact404-test", t0 + 2000, 0.00005),
      ],
      failure: {
        code: "PACT-404",
        stage: "settlement",
        fault_domain: "settlement",
        terminality: "non_terminal",
        evidence_refs: ["settlement-handle-timeout-xyz789"],
        timestamp: t0 + 10000,
        transcript_hash: H("not derivable either"),
      },
    }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [command, ...args] = process.argv.slice(2);
  if (command === "generate") {
    mkdirSync(args[0], { recursive: true });
    for (const [name, transcript] of Object.entries(fixtures())) {
      writeFileSync(join(args[0], name), JSON.stringify(transcript, null, 2) + "\n");
    }
  } else if (command === "verify") {
    const results = args.map((file) => ({ file, ...replay(JSON.parse(readFileSync(file, "utf8"))) }));
    process.stdout.write(JSON.stringify({ results }) + "\n");
  } else {
    console.error("usage: node transcript_v4.mjs generate DIR | verify FILE...");
    process.exit(2);
  }
}
