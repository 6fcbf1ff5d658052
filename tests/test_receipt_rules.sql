-- One rule for receipts, signatures and the DSFinV-K export (ledger.receipt_lines): the printed receipt's VAT, the
-- signed process data and the exported lines, receipt sums and closing sums agree to the cent, in the cases a tax
-- auditor compares: VAT rounded once per rate, a cash refund negative everywhere, a deposit and its return at the
-- drink's rate, a top-up fee as a service at 19 %.
BEGIN;
SELECT plan(23);

CREATE FUNCTION pg_temp.sell(p_number integer, p_uid text, p_tag_no integer, p_amount bigint, VARIADIC p_items text[])
RETURNS text LANGUAGE sql AS $$
-- Reserves a sale at the suite's Bar terminal and replicates it as committed.
-- Returns the replication's outcome (booked).
    SELECT api.reserve(test.bar(), p_number, p_uid, p_tag_no, p_amount, test.items(test.e(), VARIADIC p_items));
    SELECT outcome FROM api.replicate(test.bar(), jsonb_build_array(jsonb_build_object(
        'terminal_tx_number', p_number, 'state', 'Committed', 'uid', p_uid, 'amount', p_amount)));
$$;

INSERT INTO test.ctx VALUES ('e', test.event('pgTAP receipt rules'));
INSERT INTO test.ctx VALUES ('bar', test.terminal(test.e(), 'Bar'));
INSERT INTO test.ctx VALUES ('top', test.terminal(test.e(), 'Top-up'));
INSERT INTO test.ctx SELECT name, api.create_product(test.e(), name, 105, 19) FROM unnest(ARRAY['Cola', 'Mate', 'Lemonade']) name;
INSERT INTO test.ctx VALUES ('cup19', api.create_product(test.e(), 'Cup 19', 200, 19, p_returnable => true));
SELECT lives_ok($$SELECT api.topup(test.v('top'), 1, 'C2000001', 10000, 'cash')$$, 'a cash top-up of 100.00');

-- Three different items of 1.05 at 19 %: 3 x 16.76 cents of tax, rounded once per rate: 50, not 3 x 17 = 51.
SELECT is(pg_temp.sell(1, 'C2000001', 0, 315, 'Cola:1', 'Mate:1', 'Lemonade:1'), 'booked', 'three items of 1.05 sold');
INSERT INTO test.ctx VALUES ('sale', test.bartx(1));
SELECT is((SELECT (v ->> 'tax')::bigint FROM jsonb_array_elements(api.receipt(test.v('sale')) -> 'vat') v
            WHERE (v ->> 'rate')::numeric = 19), 50::bigint, 'the receipt shows 0.50 tax at 19 %');
SELECT is((SELECT sum(tax)::bigint FROM ledger.receipt_lines(test.v('sale'))), 50::bigint,
          'its lines carry shares of the rate''s tax that add up to 0.50');
SELECT is((SELECT array_agg(tax ORDER BY line_no) FROM ledger.receipt_lines(test.v('sale'))), ARRAY[17, 17, 16]::bigint[],
          'the shares: 17, 17, 16 cents');
SELECT is(ledger.tse_process_data(test.v('sale')), 'Beleg^3.15_0.00_0.00_0.00_0.00^3.15:Unbar',
          'the process data: 3.15 at 19 %, paid with credit (Unbar)');

-- A cash refund of 1.00: negative on the receipt, in the process data and in the export.
SELECT lives_ok($$SELECT api.refund(test.v('top'), 2, 'C2000001', 100)$$, 'a cash refund of 1.00');
INSERT INTO test.ctx SELECT 'refund', id FROM ledger.transaction WHERE assignment_id = test.v('top') AND terminal_tx_number = 2;
SELECT is((api.receipt(test.v('refund')) ->> 'total')::bigint, -100::bigint, 'the refund''s receipt total is -1.00');
SELECT is((api.receipt(test.v('refund')) -> 'items' -> 0 ->> 'gross')::bigint, -100::bigint, 'and so is its line');
SELECT is(ledger.tse_process_data(test.v('refund')), 'Beleg^0.00_0.00_0.00_0.00_-1.00^-1.00:Bar',
          'the process data says -1.00 in cash');

-- A cup deposit sold with a beer takes the beer's 19 %; its return reduces the 19 % slot again.
SELECT is(pg_temp.sell(2, 'C2000001', 1, 650, 'Beer:1', 'Cup 19:1'), 'booked', 'a beer in a cup with deposit');
SELECT is(ledger.tse_process_data(test.bartx(2)), 'Beleg^6.50_0.00_0.00_0.00_0.00^6.50:Unbar', 'beer and deposit at 19 %');
SELECT lives_ok($$SELECT api.deposit_return(test.bar(), 3, 'C2000001', test.items(test.e(), 'Cup 19:1'))$$,
                'the cup comes back');
SELECT is(ledger.tse_process_data(test.bartx(3)), 'Beleg^-2.00_0.00_0.00_0.00_0.00^-2.00:Unbar',
          'the deposit return reduces the 19 % slot, not 0 %');

-- A card top-up of 20.00 with a fee of 0.50: 19.50 of credit (not taxable) and the fee, a service at 19 %.
SELECT lives_ok($$SELECT api.topup(test.v('top'), 3, 'C2000001', 2000, 'card')$$, 'a card top-up of 20.00');
INSERT INTO test.ctx SELECT 'card', id FROM ledger.transaction WHERE assignment_id = test.v('top') AND terminal_tx_number = 3;
SELECT results_eq($$SELECT kind, gross, vat_key, tax FROM ledger.receipt_lines(test.v('card'))$$,
                  $$VALUES ('voucher', 1950::bigint, 5, 0::bigint), ('fee', 50::bigint, 1, 8::bigint)$$,
                  'the top-up''s lines: the credit at key 5, the fee at key 1 with 0.08 tax');
SELECT is(ledger.tse_process_data(test.v('card')), 'Beleg^0.50_0.00_0.00_0.00_19.50^20.00:Unbar',
          'its process data: 0.50 at 19 %, 19.50 not taxable, 20.00 paid by card');

-- A chargeback of 4.00 of a sale of a beer (4.50 at 19 %) and a pretzel (3.50 at 7 %) reduces both rates in proportion.
SELECT is(pg_temp.sell(4, 'C2000001', 2, 800, 'Beer:1', 'Pretzel:1'), 'booked', 'a beer and a pretzel');
INSERT INTO test.ctx SELECT 'chargeback', transaction_id FROM api.chargeback(test.bartx(4), 400);
SELECT is(ledger.tse_process_data(test.v('chargeback')), 'Beleg^-2.25_-1.75_0.00_0.00_0.00^-4.00:Unbar',
          'the chargeback: -2.25 at 19 % and -1.75 at 7 %, not -4.00 at 0 %');

-- The export of the closed tills says the same, receipt by receipt and closing by closing.
SELECT lives_ok($$SELECT api.close_cashpoint(test.e(), test.bar()), api.close_cashpoint(test.e(), test.v('top')),
                        api.close_cashpoint(test.e(), NULL)$$,
                'both tills and the backend (the chargeback) closed');
SELECT is_empty($$SELECT r.transaction_id FROM api.dsfinvk_receipts(ARRAY(SELECT id FROM ledger.cashpoint_closing
                                                                        WHERE event_id = test.e())) r
                   WHERE r.total IS DISTINCT FROM (api.receipt(r.transaction_id) ->> 'total')::bigint
                      OR r.vat IS DISTINCT FROM (SELECT jsonb_agg(jsonb_build_object('vat_key', v -> 'key', 'gross', v -> 'gross',
                                                                                     'net', v -> 'net', 'tax', v -> 'tax')
                                                                  ORDER BY (v ->> 'key')::integer)
                                                   FROM jsonb_array_elements(api.receipt(r.transaction_id) -> 'vat') v)::jsonb$$,
                'every exported receipt has the printed receipt''s total and VAT per rate');
SELECT is((SELECT sum(tax)::bigint FROM api.dsfinvk_lines(ARRAY(SELECT id FROM ledger.cashpoint_closing WHERE event_id = test.e()))
            WHERE transaction_id = test.v('sale')), 50::bigint, 'the exported lines of the 3 x 1.05 sale carry 0.50 tax');
SELECT is((SELECT sum((g ->> 'tax')::bigint) FROM api.dsfinvk_closings(test.e()) c, jsonb_array_elements(c.business_cases) g
            WHERE (g ->> 'vat_key')::integer = 1),
          (SELECT sum((v ->> 'tax')::bigint) FROM ledger.transaction t, jsonb_array_elements(api.receipt(t.id) -> 'vat') v
            WHERE t.event_id = test.e() AND t.state = 'Committed' AND t.type <> 'transfer' AND (v ->> 'key')::integer = 1),
          'the closings'' 19 % tax is the sum of the printed receipts'' 19 % tax');

SELECT * FROM finish();
ROLLBACK;
