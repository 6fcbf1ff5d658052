-- Cash-point closings (Kassenabschluss, DSFinV-K): per till, every committed receipt not closed yet gets the till's
-- next Z number, which ascends 1, 2, 3 independently per till and is never reset; nothing is closed twice.
BEGIN;
SELECT plan(22);

INSERT INTO test.ctx VALUES ('e', test.event('pgTAP closing'));
INSERT INTO test.ctx VALUES ('bar', test.terminal(test.e(), 'Bar'));
INSERT INTO test.ctx VALUES ('food', test.terminal(test.e(), 'Food'));
INSERT INTO test.ctx VALUES ('top', test.terminal(test.e(), 'Top-up'));
SELECT lives_ok($$SELECT api.topup(test.v('top'), 1, 'C1000001', 10000, 'cash')$$, 'a cash top-up of 100.00');

-- Nothing open: nothing to close.
SELECT throws_ok($$SELECT api.close_cashpoint(test.e(), test.bar())$$, 'FP001', NULL,
                 'a till without open receipts cannot be closed (validation)');
SELECT throws_ok($$SELECT api.close_cashpoint(test.e(), -1)$$, 'FP010', NULL, 'an unknown till: not-found');

-- A reserve is no receipt; the sale is once it commits.
SELECT lives_ok($$SELECT api.reserve(test.bar(), 1, 'C1000001', 0, 1450, test.items(test.e(), 'Beer:2', 'Pretzel:1', 'Cup:1'))$$,
                'a sale is reserved at the bar');
SELECT throws_ok($$SELECT api.close_cashpoint(test.e(), test.bar())$$, 'FP001', NULL, 'a reserve is not closed');
SELECT is((SELECT outcome FROM api.replicate(test.bar(), jsonb_build_array(jsonb_build_object(
              'terminal_tx_number', 1, 'state', 'Committed', 'uid', 'C1000001', 'amount', 1450)))), 'booked', 'the sale commits');
SELECT lives_ok($$SELECT api.reserve(test.bar(), 2, 'C1000001', 1, 450, test.items(test.e(), 'Beer:1'))$$, 'a second sale');
SELECT is((SELECT outcome FROM api.replicate(test.bar(), jsonb_build_array(jsonb_build_object(
              'terminal_tx_number', 2, 'state', 'Committed', 'uid', 'C1000001', 'amount', 450)))), 'booked', 'it commits');

SELECT row_eq($$SELECT z_nr, transactions, total FROM api.close_cashpoint(test.e(), test.bar())$$,
              ROW(1, 2, 1900::bigint), 'the bar''s first closing: Z 1, both sales, 19.00');
SELECT throws_ok($$SELECT api.close_cashpoint(test.e(), test.bar())$$, 'FP001', NULL, 'closed once: nothing left open');
SELECT row_eq($$SELECT z_nr, transactions, total FROM api.close_cashpoint(test.e(), test.v('top'))$$,
              ROW(1, 1, 10000::bigint), 'the top-up desk counts its own Z numbers: Z 1');

-- More receipts, more closings.
SELECT lives_ok($$SELECT api.reserve(test.bar(), 3, 'C1000001', 2, 350, test.items(test.e(), 'Pretzel:1'))$$, 'a third sale');
SELECT is((SELECT outcome FROM api.replicate(test.bar(), jsonb_build_array(jsonb_build_object(
              'terminal_tx_number', 3, 'state', 'Committed', 'uid', 'C1000001', 'amount', 350)))), 'booked', 'it commits');
SELECT is((SELECT z_nr FROM api.close_cashpoint(test.e(), test.bar())), 2, 'the bar''s second closing: Z 2');
SELECT lives_ok($$SELECT api.refund(test.v('top'), 2, 'C1000001', 500)$$, 'a cash refund at the desk');
SELECT row_eq($$SELECT z_nr, transactions, total FROM api.close_cashpoint(test.e(), test.v('top'))$$,
              ROW(2, 1, -500::bigint), 'the desk''s Z 2: the refund pays out');
SELECT lives_ok($$SELECT api.reserve(test.bar(), 4, 'C1000001', 3, 450, test.items(test.e(), 'Beer:1'))$$, 'a fourth sale');
SELECT is((SELECT outcome FROM api.replicate(test.bar(), jsonb_build_array(jsonb_build_object(
              'terminal_tx_number', 4, 'state', 'Committed', 'uid', 'C1000001', 'amount', 450)))), 'booked', 'it commits');
SELECT is((SELECT z_nr FROM api.close_cashpoint(test.e(), test.bar())), 3, 'the bar''s third closing: Z 3');
SELECT is((SELECT array_agg(z_nr ORDER BY id) FROM ledger.cashpoint_closing WHERE event_id = test.e()
            AND client_id = 'festpay-' || test.bar()), ARRAY[1, 2, 3], 'the bar''s Z numbers ascend 1, 2, 3');

-- Every committed receipt of the event's tills belongs to exactly one closing; the food till never sold: no closing.
SELECT is_empty($$SELECT t.id FROM ledger.transaction t WHERE t.event_id = test.e() AND t.state = 'Committed'
                   AND NOT EXISTS (SELECT FROM ledger.cashpoint_closing_transaction c WHERE c.transaction_id = t.id)$$,
                'every committed receipt is closed, each once (primary key)');
SELECT throws_ok($$UPDATE ledger.cashpoint_closing SET z_nr = 1 WHERE event_id = test.e()$$, 'FP050', NULL,
                 'closings are append-only');

SELECT * FROM finish();
ROLLBACK;
