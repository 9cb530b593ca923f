-- pgbench -M prepared -f bench/create_shape.sql -D clients=N -c N -j N -T S pact_bench
--
-- The database work of one ledger-rail settlement create (ACCEPT -> locked), as one
-- transaction on the real migrated schema: the same 19 statements, in the same order, against
-- the same tables, indexes, CHECKs and triggers (append-only guards, the deferred
-- journal_legs_balanced trigger), with rows as big as the service's (ACCEPT envelope about
-- 1.3 KB of JSON, ASK about 0.7 KB, the stored 201 response about 1.3 KB). What the service
-- adds on top is Python: HTTP, signature checks, the ORM and asyncpg. This is the ceiling
-- for this transaction shape, next to TPC-B's 5 statements.
--
-- Needs the 128 accounts bench/settlement_bench.py seeds (owners shape-buyer-<32 digits>) and
-- -D clients=N (the client count). Client c locks only buyers c, c+N, c+2N, ... so no two
-- clients ever wait for the same account, as the service's callers (ACCEPT i is buyer i mod
-- 128, sent in order) almost never do.
--
-- Ids are the service's shape and length (st_ + 26 characters, time-ordered: the clock in ms,
-- then 13 random digits), and the hashes are 64 hex characters. pgbench replaces every colon
-- followed by a name character with a parameter in -M prepared mode, even inside string
-- literals, so the compact (canonical) JSON envelopes and the response's timestamps are
-- written with ^ for the colon and replace()d.

\set n random(1, 9999999999999)
\set b :client_id + :clients * random(0, 128 / :clients - 1)

BEGIN;

-- 1. the named locks (idempotency key, intent), sorted as the service sorts them (a slash
-- where the service's names have a colon); the same round trip also derives this
-- transaction's ids and hashes
SELECT pg_advisory_xact_lock(hashtextextended('idem/settlements.create/accept-' || h, 0)) AS lock_idem,
       pg_advisory_xact_lock(hashtextextended('intent/sb-' || k, 0)) AS lock_intent,
       k, h, fp, md5(fp) AS rid, 'shape-buyer-' || lpad(:b::text, 32, '0') AS buyer,
       (extract(epoch FROM now()) * 1000)::bigint AS now_ms
  FROM (SELECT k, md5(k) || md5(reverse(k)) AS h, md5(k || 'f') || md5(reverse(k) || 'f') AS fp
          FROM (SELECT lpad(((extract(epoch FROM clock_timestamp()) * 1000)::bigint)::text, 13, '0')
                       || lpad(:n::text, 13, '0') AS k) AS t) AS v
\gset

-- 2. the idempotency key
SELECT id, scope, key, fingerprint, resource_id, status_code, response, created_at, completed_at
  FROM idempotency_keys WHERE scope = 'settlements.create' AND key = 'accept-' || :h;

-- 3. a settlement for this intent
SELECT id, intent_id, state, rail, amount, bond, bond_locked, buyer, seller, settlement_mode,
       proof_type, challenge_window_ms, delivery_deadline_ms, delivery_deadline_at,
       quote_expires_at, accept_hash, request_fingerprint, failure_code, failure_detail,
       locked_at, commit_hash_hex, reveal_hash_hex, delivered_at, challenge_ends_at,
       receipt_json, closed_at, created_at, updated_at
  FROM settlements WHERE intent_id = 'sb-' || :k;

-- 4. the settlement, pending
INSERT INTO settlements (id, intent_id, state, rail, asset, amount, bond, bond_locked, buyer, seller,
                         settlement_mode, proof_type, challenge_window_ms, delivery_deadline_ms,
                         delivery_deadline_at, quote_expires_at, accept_hash, request_fingerprint,
                         failure_code, failure_detail, locked_at, commit_hash_hex, reveal_hash_hex,
                         delivered_at, challenge_ends_at, receipt_json, closed_at, created_at,
                         updated_at)
VALUES ('st_' || :k, 'sb-' || :k, 'pending', 'ledger', 'USD', 0.00008, 0.00016, 0, :buyer,
        'ACzDEKEkh6ns9gCgzz9jnHqYTzNwSDEa5mzerjmRzMum', 'hash_reveal', 'hash_reveal', 60000,
        :now_ms::bigint + 7200000, now() + interval '2 hours', now() + interval '1 hour', :h, :fp,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, now(), now());

-- 5. event 1
INSERT INTO settlement_events (settlement_id, seq, event, from_state, to_state, actor, reason,
                               data, request_id, created_at)
VALUES ('st_' || :k, 1, 'settlement.created', NULL, 'pending', 'provider', NULL,
        '{"amount": "0.00008", "bond": "0.00016", "rail": "ledger"}', :rid, now())
RETURNING id;

-- 6. the ACCEPT and ASK transcripts, one multi-row INSERT
INSERT INTO transcripts (id, settlement_id, kind, message_hash_hex, signer, envelope_json,
                         detail, created_at)
VALUES ('trn_' || :k, 'st_' || :k, 'ACCEPT', :h, :buyer,
        replace('{"envelope_version"^"pact-envelope/1.0","message"^{"agreed_price"^0.00008,"challenge_window_ms"^60000,"delivery_deadline_ms"^' || (:now_ms::bigint + 7200000) || ',"expires_at_ms"^' || (:now_ms::bigint + 3600000) || ',"intent_id"^"sb-' || :k || '","proof_type"^"hash_reveal","protocol_version"^"pact/1.0","quote"^{"envelope_version"^"pact-envelope/1.0","message"^{"bond_required"^0.00016,"buyer_public_key_b58"^"' || :buyer || '","expires_at_ms"^' || (:now_ms::bigint + 3600000) || ',"intent"^"weather.data","intent_id"^"sb-' || :k || '","latency_ms"^100,"list_price"^0.00008,"price"^0.00008,"protocol_version"^"pact/1.0","round"^1,"sent_at_ms"^' || :now_ms || ',"settlement_mode"^"hash_reveal","type"^"ASK","unit"^"request","valid_for_ms"^3600000},"message_hash_hex"^"' || :fp || '","signature_b58"^"45pc4LXdz3a342W4gAcbmy8gC5are6Hx74HR3zUemtUgJsBT231q9kgiVJeJAzCiSj3o49TNPYydjY6qxqrAfkUw","signed_at_ms"^' || :now_ms || ',"signer_public_key_b58"^"ACzDEKEkh6ns9gCgzz9jnHqYTzNwSDEa5mzerjmRzMum"},"sent_at_ms"^' || :now_ms || ',"settlement_mode"^"hash_reveal","type"^"ACCEPT"},"message_hash_hex"^"' || :h || '","signature_b58"^"2Bj2mktSfj6cqR1yxvdEQFxMkZwoMLaZzc2EF8MAiU2q77sBpnRs67UemYXnzVQEcLtuv1zyTirNYSRbaHArigJN","signed_at_ms"^' || :now_ms || ',"signer_public_key_b58"^"' || :buyer || '"}', '^', ':'),
        'null', now()),
       ('trn_' || :k || 'q', 'st_' || :k, 'ASK', :fp, 'ACzDEKEkh6ns9gCgzz9jnHqYTzNwSDEa5mzerjmRzMum',
        replace('{"envelope_version"^"pact-envelope/1.0","message"^{"bond_required"^0.00016,"buyer_public_key_b58"^"' || :buyer || '","expires_at_ms"^' || (:now_ms::bigint + 3600000) || ',"intent"^"weather.data","intent_id"^"sb-' || :k || '","latency_ms"^100,"list_price"^0.00008,"price"^0.00008,"protocol_version"^"pact/1.0","round"^1,"sent_at_ms"^' || :now_ms || ',"settlement_mode"^"hash_reveal","type"^"ASK","unit"^"request","valid_for_ms"^3600000},"message_hash_hex"^"' || :fp || '","signature_b58"^"45pc4LXdz3a342W4gAcbmy8gC5are6Hx74HR3zUemtUgJsBT231q9kgiVJeJAzCiSj3o49TNPYydjY6qxqrAfkUw","signed_at_ms"^' || :now_ms || ',"signer_public_key_b58"^"ACzDEKEkh6ns9gCgzz9jnHqYTzNwSDEa5mzerjmRzMum"}', '^', ':'),
        'null', now());

-- 7. the idempotency key, in progress
INSERT INTO idempotency_keys (id, scope, key, fingerprint, resource_id, status_code, created_at,
                              completed_at)
VALUES ('idk_' || :k, 'settlements.create', 'accept-' || :h, :fp, 'st_' || :k, NULL, now(), NULL);

-- 8. the rail operation, pending
INSERT INTO rail_operations (id, settlement_id, rail, step, idempotency_key, status, amount,
                             bond, external_ref, error_code, error_detail, attempts, plan,
                             lease_until, created_at, updated_at, resolved_at)
VALUES ('rop_' || :k, 'st_' || :k, 'ledger', 'lock', 'settlement-st_' || :k || '-lock',
        'pending', 0.00008, 0, NULL, NULL, NULL, 1,
        ('{"step": "lock", "on_succeeded": {"event": "settlement.locked", "failure_code": null, "failure_detail": null, "reason": null, "data": {}, "values": {}}, "on_failed": {"event": "settlement.lock_failed", "failure_code": null, "failure_detail": null, "reason": null, "data": {}, "values": {}}, "actor": "provider", "request_id": "' || :rid || '"}')::json,
        NULL, now(), now(), NULL);

-- 9. the ledger rail's savepoint
SAVEPOINT rail_lock;

-- 10. the journal transaction, if this lock was already posted
SELECT id, kind, idempotency_key, settlement_id, memo, created_at
  FROM journal_transactions WHERE idempotency_key = 'settlement-st_' || :k || '-lock';

-- 11. the buyer's account, locked
SELECT id AS acct, owner, kind, allow_negative, available, locked, created_at, updated_at
  FROM ledger_accounts WHERE (owner, asset) IN ((:buyer, 'USD')) ORDER BY owner, asset
   FOR UPDATE
\gset

-- 12. the journal transaction
INSERT INTO journal_transactions (id, kind, idempotency_key, settlement_id, memo, created_at)
VALUES ('jtx_' || :k, 'lock', 'settlement-st_' || :k || '-lock', 'st_' || :k, 'lock sb-' || :k,
        now());

-- 13. its two legs (available -x, locked +x), one multi-row INSERT
INSERT INTO journal_legs (transaction_id, account_id, bucket, amount, asset)
VALUES ('jtx_' || :k, :acct, 'available', -0.00008, 'USD'),
       ('jtx_' || :k, :acct, 'locked', 0.00008, 'USD')
RETURNING id;

-- 14. the new balances, computed from the row read in 11
UPDATE ledger_accounts SET available = :available::numeric - 0.00008,
                           locked = :locked::numeric + 0.00008, updated_at = now()
 WHERE id = :acct;

-- 15.
RELEASE SAVEPOINT rail_lock;

-- 16. the rail operation succeeded
UPDATE rail_operations SET status = 'succeeded', external_ref = 'jtx_' || :k, error_code = NULL,
                           error_detail = NULL, updated_at = now(), resolved_at = now()
 WHERE id = 'rop_' || :k;

-- 17. pending -> locked
UPDATE settlements SET state = 'locked', locked_at = now(), updated_at = now()
 WHERE id = 'st_' || :k AND state = 'pending';

-- 18. event 2
INSERT INTO settlement_events (settlement_id, seq, event, from_state, to_state, actor, reason,
                               data, request_id, created_at)
VALUES ('st_' || :k, 2, 'settlement.locked', 'pending', 'locked', 'provider', NULL,
        ('{"rail_step": "lock", "rail_reference": "jtx_' || :k || '"}')::json, :rid, now())
RETURNING id;

-- 19. the idempotency key, completed with the 201 response
UPDATE idempotency_keys SET status_code = 201, completed_at = now(),
       response = replace('{"id": "st_' || :k || '", "intent_id": "sb-' || :k || '", "state": "locked", "rail": "ledger", "amount": "0.00008", "bond": "0.00016", "bond_locked": "0", "buyer": "' || :buyer || '", "seller": "ACzDEKEkh6ns9gCgzz9jnHqYTzNwSDEa5mzerjmRzMum", "settlement_mode": "hash_reveal", "proof_type": "hash_reveal", "delivery_deadline_at": "2026-11-26T15^48^27.843000Z", "delivery_deadline_ms": ' || (:now_ms::bigint + 7200000) || ', "challenge_window_ms": 60000, "quote_expires_at": "2026-11-26T14^48^27.843000Z", "failure_code": null, "failure_detail": null, "locked_at": "2026-11-26T13^48^27.900000Z", "commit_hash_hex": null, "reveal_hash_hex": null, "delivered_at": null, "challenge_ends_at": null, "receipt": null, "created_at": "2026-11-26T13^48^27.862336Z", "updated_at": "2026-11-26T13^48^27.900194Z", "closed_at": null, "events": [{"seq": 1, "event": "settlement.created", "from_state": null, "to_state": "pending", "actor": "provider", "reason": null, "data": {"amount": "0.00008", "bond": "0.00016", "rail": "ledger"}, "created_at": "2026-11-26T13^48^27.862336Z"}, {"seq": 2, "event": "settlement.locked", "from_state": "pending", "to_state": "locked", "actor": "provider", "reason": null, "data": {"rail_step": "lock", "rail_reference": "jtx_' || :k || '"}, "created_at": "2026-11-26T13^48^27.900194Z"}]}', '^', ':')::json
 WHERE id = 'idk_' || :k;

COMMIT;
