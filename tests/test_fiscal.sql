-- Fiscal signing in the database (SPEC 8): every committed receipt is enqueued in its own booking transaction with the
-- process data of DSFinV-K; a relay takes a till's requests in order, records failures (backoff, outage) and stores a
-- signature exactly once.
BEGIN;
SELECT plan(31);

INSERT INTO test.ctx VALUES ('e', test.event('pgTAP fiscal'));
INSERT INTO test.ctx VALUES ('bar', test.terminal(test.e(), 'Bar'));
SELECT is(test.funded_tag(test.e(), 'FA000001', 20000), 20000::bigint, 'a cash top-up of 200.00');
INSERT INTO test.ctx SELECT 'topup', max(id) FROM ledger.transaction WHERE event_id = test.e() AND type = 'topup';
INSERT INTO test.ctx SELECT 'top', assignment_id FROM ledger.transaction WHERE id = test.v('topup');

-- What is enqueued, and what it will sign.
SELECT is((SELECT count(*) FROM ledger.outbox o JOIN ledger.transaction t ON t.id = o.transaction_id
            WHERE t.event_id = test.e()), 1::bigint, 'the committed top-up waits in the outbox');
SELECT is((SELECT process_data FROM api.tse_request((SELECT id FROM ledger.outbox WHERE transaction_id = test.v('topup')))),
          'Beleg^0.00_0.00_0.00_0.00_200.00^200.00:Bar', 'top-up: a voucher sale, not taxable (0 %), paid in cash');
INSERT INTO test.ctx SELECT 'sale', transaction_id
  FROM api.reserve(test.v('bar'), 1, 'FA000001', 0, 1450, test.items(test.e(), 'Beer:2', 'Pretzel:1', 'Cup:1'));
SELECT is((SELECT count(*) FROM ledger.outbox WHERE transaction_id = test.v('sale')), 0::bigint,
          'a reserve is not a receipt: nothing enqueued');
SELECT is((SELECT outcome FROM api.replicate(test.v('bar'), jsonb_build_array(jsonb_build_object(
              'terminal_tx_number', 1, 'state', 'Committed', 'uid', 'FA000001', 'amount', 1450)))), 'booked', 'the sale commits');
SELECT row_eq($$SELECT client_id, process_type, process_data FROM api.tse_request(
                  (SELECT id FROM ledger.outbox WHERE transaction_id = test.v('sale')))$$,
              ROW('festpay-' || test.v('bar'), 'Kassenbeleg-V1'::text, 'Beleg^9.00_3.50_0.00_0.00_2.00^14.50:Unbar'::text),
              'the sale: the till is the client, gross per VAT rate 19/7/0 %, paid by credit (Unbar)');
INSERT INTO test.ctx SELECT 'refund', transaction_id FROM api.refund(test.v('top'), 2, 'FA000001', 500);  -- same desk
SELECT is((SELECT process_data FROM api.tse_request((SELECT id FROM ledger.outbox WHERE transaction_id = test.v('refund')))),
          'Beleg^0.00_0.00_0.00_0.00_-5.00^-5.00:Bar', 'a cash refund pays out: negative, cash');
INSERT INTO test.ctx SELECT 'cupback', transaction_id
  FROM api.deposit_return(test.v('bar'), 2, 'FA000001', test.items(test.e(), 'Cup:1'));
SELECT isnt(test.v('cupback'), NULL, 'a returned cup');
SELECT is((SELECT process_data FROM api.tse_request((SELECT id FROM ledger.outbox WHERE transaction_id = test.v('cupback')))),
          'Beleg^0.00_0.00_0.00_0.00_-2.00^-2.00:Unbar', 'a deposit return pays the deposit back: negative, 0 %');
SELECT lives_ok($$SELECT api.transfer(test.e(), 'FA000001', 'FA000002', 100)$$, 'a transfer between tags');
SELECT is((SELECT count(*) FROM ledger.outbox o JOIN ledger.transaction t ON t.id = o.transaction_id
            WHERE t.event_id = test.e() AND t.type = 'transfer'), 0::bigint, 'a transfer is no receipt');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'every committed receipt is signed or waiting');

-- A relay takes one till's requests in order. (Requests other suites left behind are set aside for this
-- transaction, which rolls back, so that this event's tills are the ones due.)
UPDATE ledger.outbox o SET done_at = now()
 WHERE o.done_at IS NULL AND NOT EXISTS (SELECT FROM ledger.transaction t WHERE t.id = o.transaction_id AND t.event_id = test.e());
-- (That other relays skip a claimed till, FOR UPDATE SKIP LOCKED, takes two sessions: tests/test_fiscal_outage.py.)
SELECT ok(api.outbox_prepare('tse') >= 2, 'the tills with requests get their lock rows');
SELECT is(api.outbox_prepare('tse'), 0, 'once: preparing again adds none');
SELECT is((SELECT array_agg(transaction_id ORDER BY outbox_id) FROM api.outbox_claim('tse')),
          ARRAY[test.v('topup'), test.v('refund')], 'the first due till (the top-up desk): its requests in order');
SAVEPOINT handled;
UPDATE ledger.outbox SET done_at = now() WHERE transaction_id IN (test.v('topup'), test.v('refund'));
SELECT is((SELECT array_agg(transaction_id ORDER BY outbox_id) FROM api.outbox_claim('tse')),
          ARRAY[test.v('sale'), test.v('cupback')],
          'once the top-up desk is done, the next claim takes the bar, its two requests in order');
ROLLBACK TO SAVEPOINT handled;
SELECT is((SELECT pending FROM api.outbox_lag('tse') ), (SELECT count(*) FROM ledger.outbox WHERE done_at IS NULL),
          'the lag counts what waits');

-- The TSE fails, then signs.
INSERT INTO test.ctx SELECT 'req', id FROM ledger.outbox WHERE transaction_id = test.v('sale');
SELECT ok(api.tse_failed(test.v('req'), 'TSE unreachable') > now(), 'a failure puts the request off (backoff)');
SELECT lives_ok($$SELECT api.tse_failed(test.v('req'), 'TSE unreachable')$$, 'a second failure');
SELECT is((SELECT count(*) FROM ledger.tse_outage WHERE ended_at IS NULL), 1::bigint, 'one outage is open, not two');
SELECT is(api.tse_started(test.v('req'), '{"transaction_number": 7, "start_time": 1764000000}'),
          '{"transaction_number": 7, "start_time": 1764000000}'::jsonb,
          'the TSE transaction begun is recorded before it is finished');
SELECT is(api.tse_started(test.v('req'), '{"transaction_number": 8, "start_time": 1764000005}'),
          '{"transaction_number": 7, "start_time": 1764000000}'::jsonb,
          'a second start (a relay that lost its claim) is told the first one, which stays');
SELECT lives_ok($$SELECT api.tse_store(test.v('req'), jsonb_build_object(
        'serial_number', repeat('ab', 32), 'client_id', 'festpay-' || test.v('bar'), 'process_type', 'Kassenbeleg-V1',
        'process_data', 'Beleg^9.00_3.50_0.00_0.00_2.00^14.50:Unbar', 'transaction_number', 7, 'signature_counter', 15,
        'start_time', 1764000000, 'log_time', 1764000001, 'algorithm', 'ecdsa-plain-SHA384',
        'signature', encode('sig', 'base64'), 'public_key', encode('key', 'base64')))$$, 'the signature is stored');
SELECT row_eq($$SELECT late, tse_tx_number, signature_counter FROM ledger.tse_signature WHERE transaction_id = test.v('sale')$$,
              ROW(true, 7::bigint, 15::bigint), 'signed late (after failures), with its numbers');
SELECT is((SELECT count(*) FROM ledger.tse_outage WHERE ended_at IS NULL), 0::bigint, 'the signature ends the outage');
SELECT throws_ok($$SELECT api.tse_store(test.v('req'), '{}')$$, 'FP010', NULL, 'a request is never signed twice');

-- Waking a sleeping relay: only then does a booking NOTIFY (NOTIFY serialises commits database-wide).
SELECT ok(api.relay_sleep('tse'), 'a relay about to sleep is told that requests are still due');
SELECT is((SELECT asleep FROM ledger.relay_wakeup WHERE topic = 'tse'), true, 'it sleeps: the next booking wakes it');
SELECT lives_ok($$SELECT api.refund(test.v('top'), 3, 'FA000001', 100)$$, 'a booking while it sleeps');
SELECT is((SELECT asleep FROM ledger.relay_wakeup WHERE topic = 'tse'), false,
          'that booking sent the one NOTIFY and cleared the flag; the next ones send none');
SELECT is_empty($$SELECT * FROM api.check_invariants()$$, 'invariants hold');

SELECT * FROM finish();
ROLLBACK;
