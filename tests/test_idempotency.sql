-- Idempotency keys (SPEC 6): a new key runs, a finished one replays its answer, another request under the same key
-- is a mismatch, a repeat while the first runs is told so; expired and abandoned claims are taken over.
BEGIN;
SELECT plan(17);

SET LOCAL ROLE festpay_terminal;   -- the terminal API's role may do exactly what these calls need
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:1', 'k-1', repeat('a', 64))), 'new',
          'a first claim of a key: new');
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:1', 'k-1', repeat('a', 64))), 'running',
          'the same request again while the first still runs: running (409)');
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:1', 'k-1', repeat('b', 64))), 'mismatch',
          'another request under the same key: mismatch (422)');
SELECT lives_ok($$SELECT api.idempotency_complete('assignment:1', 'k-1', 201, '{"assignment_id": 7}')$$,
                'the answer is stored');
SELECT row_eq($$SELECT outcome, status, response FROM api.idempotency_claim('assignment:1', 'k-1', repeat('a', 64))$$,
              ROW('replay'::text, 201, '{"assignment_id": 7}'::jsonb),
              'the same request after it finished: the stored status and answer');
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:1', 'k-1', repeat('b', 64))), 'mismatch',
          'another request under a finished key: still mismatch');
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:2', 'k-1', repeat('b', 64))), 'new',
          'keys are scoped to the caller: the same key of another terminal is new');

SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:1', 'k-2', repeat('c', 64))), 'new', 'k-2 claimed');
SELECT lives_ok($$SELECT api.idempotency_release('assignment:1', 'k-2')$$, 'a failed request releases its claim');
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:1', 'k-2', repeat('d', 64))), 'new',
          'after a release the key runs again, even with another request');

SELECT throws_ok($$SELECT api.idempotency_claim('assignment:1', '', repeat('a', 64))$$, 'FP001', NULL,
                 'an empty key: validation');
SELECT throws_ok($$SELECT api.idempotency_claim('assignment:1', 'with space', repeat('a', 64))$$, 'FP001', NULL,
                 'a key with a space: validation');
SELECT throws_ok($$SELECT api.idempotency_claim('assignment:1', 'k-3', 'not-a-hash')$$, 'FP001', NULL,
                 'a request hash that is not a hex SHA-256: validation');
SELECT throws_ok($$SELECT * FROM ledger.idempotency_key$$, '42501', NULL, 'the gateway cannot read the table itself');
RESET ROLE;

-- Time passes (as the owner): a claim left running for over a minute, and a finished key past its lifetime.
UPDATE ledger.idempotency_key SET created_at = now() - interval '61 seconds' WHERE scope = 'assignment:2';
UPDATE ledger.idempotency_key SET expires_at = now() - interval '1 second' WHERE scope = 'assignment:1' AND key = 'k-1';
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:2', 'k-1', repeat('e', 64))), 'new',
          'a claim abandoned by a dead gateway (running for over 60 s) is taken over');
SELECT is((SELECT outcome FROM api.idempotency_claim('assignment:1', 'k-1', repeat('e', 64))), 'new',
          'an expired key is new again');
SELECT is(api.idempotency_purge(), 0, 'nothing left to purge after both were renewed');

SELECT * FROM finish();
ROLLBACK;
