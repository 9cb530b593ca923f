// Writes js_bodies.json: INTENT bodies signed by the JavaScript model, with JS-formatted
// numbers and astral-plane text written verbatim. Deterministic. Run: node generate.mjs
import { writeFileSync } from "node:fs";
import { signText } from "./js_sign.mjs";

const BUYER_SEED = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const NOW = 1800000000000;

const cases = [
  {
    name: "js_numbers_and_astral_scope",
    expect: { type: "ASK", price: 0.00008 }, // the INTENT's latency demand does not raise the price
    message_text: String.raw`{"protocol_version":"pact/1.0","type":"INTENT","intent_id":"intent-js-astral-scope","intent":"weather.data","scope":"Zürich 🏔️ \ud83d\uddfd caf\u00e9","constraints":{"latency_ms":4.0e1,"freshness_sec":30.0},"max_price":2e-4,"settlement_mode":"hash_reveal","sent_at_ms":1.8e12,"expires_at_ms":1800000060000,"urgent":false}`,
  },
  {
    name: "object_scope_utf16_key_order_and_whitespace",
    expect: { type: "ASK", price: 0.0001 },
    message_text: `{
  "protocol_version" : "pact/1.0", "type":"INTENT",
  "intent_id":"intent-scope-obj",
  "intent":"data.archive",
  "scope":{"\\uff61":"halfwidth","😀":"grin","𝄞":"clef","a":[1E21, -0, 0.1e-6, 5.0, 1e2],"nested":{"\\u00e9t\\u00e9":true,"z":null}},
  "constraints":{"freshness_sec":60,"latency_ms":500},
  "max_price":0.00020,
  "settlement_mode":"streaming",
  "sent_at_ms":1800000000000,"expires_at_ms":1800000030000
}`,
  },
  {
    name: "max_price_below_the_price",
    expect: { type: "REJECT", code: "PRICE_ABOVE_MAX" },
    message_text: String.raw`{"protocol_version":"pact/1.0","type":"INTENT","intent_id":"intent-tiny-budget","intent":"weather.data","scope":"NYC 🗽","constraints":{"latency_ms":100,"freshness_sec":30},"max_price":1e-7,"settlement_mode":"hash_reveal","sent_at_ms":1800000000000,"expires_at_ms":1800000060000}`,
  },
];

const out = {
  description:
    "INTENT bodies signed by the JavaScript model (js_sign.mjs); message text kept verbatim. " +
    "Post them with the provider clock at now_ms.",
  now_ms: NOW,
  buyer_seed_hex: BUYER_SEED,
  bodies: cases.map((c) => ({
    name: c.name,
    expect: c.expect,
    body_text: signText(BUYER_SEED, c.message_text, NOW + 5),
  })),
};
writeFileSync(new URL("./js_bodies.json", import.meta.url), JSON.stringify(out, null, 2) + "\n");
