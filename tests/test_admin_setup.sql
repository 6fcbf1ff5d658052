-- The admin site's setup pages, of the newest event: event settings, merchants, positions, products, terminals and
-- the tag import. Every role may read them (privilege view), only admin may change them (setup); the others get a
-- named error and change nothing; every change writes one audit row with before and after; bad input is refused next
-- to its form field with nothing saved. Archived merchants, positions and products sell nothing new and are not
-- offered to terminals (a sale already made offline is still booked); a revoked terminal's next call is refused.
BEGIN;
SELECT plan(200);

-- ---------------------------------------------------------------- helpers
-- The admin's session token (test.admin_token('admin')).
CREATE FUNCTION pg_temp.admin() RETURNS text LANGUAGE sql AS $$ SELECT test.admin_token('admin') $$;
-- Everything the setup pages change, as one text: the event, its catalogue, terminals, codes, tags, the audit log.
CREATE FUNCTION pg_temp.footprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|', ledger.admin_event_json(test.e()),
        (SELECT string_agg(m::text, ',' ORDER BY m.id) FROM ledger.merchant m WHERE m.event_id = test.e()),
        (SELECT string_agg(a::text, ',' ORDER BY a.id) FROM ledger.account a WHERE a.event_id = test.e()),
        (SELECT string_agg(p::text, ',' ORDER BY p.id) FROM ledger.position p WHERE p.event_id = test.e()),
        (SELECT string_agg(p::text, ',' ORDER BY p.id) FROM ledger.product p WHERE p.event_id = test.e()),
        (SELECT string_agg(format('%s %s', a.id, a.revoked_at), ',' ORDER BY a.id) FROM ledger.assignment a WHERE a.event_id = test.e()),
        (SELECT count(*) FROM ledger.registration_code c WHERE c.event_id = test.e()),
        (SELECT count(*) FROM ledger.tag t WHERE t.event_id = test.e()),
        (SELECT count(*) || ' ' || max(id) FROM ledger.admin_audit))) $$;
CREATE FUNCTION pg_temp.id(p_table text, p_name text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    EXECUTE format('SELECT id FROM ledger.%I WHERE event_id = $1 AND name = $2', p_table) INTO v USING test.e(), p_name;
    RETURN v;
END $$;
-- The product names a terminal is offered.
CREATE FUNCTION pg_temp.offered(p_assignment bigint) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(p ->> 'name' ORDER BY p ->> 'name') FROM jsonb_array_elements(api.terminal_config(p_assignment) -> 'products') p $$;
-- A replication entry of a Committed purchase (offline, when the backend never reserved it).
CREATE FUNCTION pg_temp.sale(p_number integer, p_uid text, p_tag_no integer, p_amount bigint, VARIADIC p_items text[])
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_array(jsonb_build_object('terminal_tx_number', p_number, 'type', 'purchase', 'state', 'Committed',
        'uid', p_uid, 'tag_tx_number', p_tag_no, 'amount', p_amount, 'items', test.items(test.e(), VARIADIC p_items))) $$;

-- ---------------------------------------------------------------- fixtures
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP admin setup');
INSERT INTO test.ctx SELECT 'bar', test.terminal(test.e(), 'Bar');
INSERT INTO test.ctx SELECT 'food', test.terminal(test.e(), 'Food');
INSERT INTO test.ctx SELECT 'top', test.terminal(test.e(), 'Top-up');
INSERT INTO test.ctx SELECT 'm', test.terminal(test.e(), 'Food');          -- revoked by the role matrix (undone)
INSERT INTO test.ctx SELECT 'user ' || role, user_id FROM test.admin_sessions('pgtap-s-');
SELECT is(test.funded_tag(test.e(), 'A0000001', 20000), 20000::bigint, 'a tag funded with 200.00');

-- ---------------------------------------------------------------- the event
SELECT is(api.admin_event(test.admin_token('viewer')) - 'created_at',
          jsonb_build_object('id', test.e(), 'name', 'pgTAP admin setup', 'currency', 'EUR', 'time_zone', 'Europe/Berlin',
              'max_balance', 50000, 'min_topup', 500, 'max_topup', 25000, 'topup_fee_cash', 0, 'topup_fee_card', 50,
              'topup_fee_online', 0, 'payout_fee', 100, 'reserve_timeout_s', 120, 'provider_check_window_s', 1800,
              'offline_limit', 5000, 'offline_log_size', 16, 'seller_name', '', 'seller_street', '', 'seller_postcode', '',
              'seller_city', '', 'tax_number', '', 'vat_id', '',
              'payout_countries', '["DE", "AT", "BE", "ES", "FI", "FR", "IE", "IT", "LU", "NL", "PT"]'::jsonb,
              'payout_deadline', NULL, 'payout_retention_days', 90, 'payout_debtor_name', '', 'payout_debtor_iban', '',
              'payout_debtor_bic', ''),
          'the event page: every setting (cents, seconds) of the newest event, never its tag key');
SELECT is(api.admin_event_update(pg_temp.admin(), '{"max_balance": 60000, "topup_fee_card": "75", "reserve_timeout_s": 90}')
          - 'created_at' - 'id' - 'name' - 'currency' - 'time_zone' - 'seller_name' - 'seller_street' - 'seller_postcode'
          - 'seller_city' - 'tax_number' - 'vat_id' - 'payout_countries' - 'payout_deadline' - 'payout_retention_days'
          - 'payout_debtor_name' - 'payout_debtor_iban' - 'payout_debtor_bic',
          '{"max_balance": 60000, "min_topup": 500, "max_topup": 25000, "topup_fee_cash": 0, "topup_fee_card": 75,
            "topup_fee_online": 0, "payout_fee": 100, "reserve_timeout_s": 90, "provider_check_window_s": 1800,
            "offline_limit": 5000, "offline_log_size": 16}'::jsonb,
          'the admin changes limits, a fee (a form''s string of digits too) and the reserve timeout; the answer shows them');
SELECT results_eq($$SELECT max_balance, topup_fee_card, reserve_timeout FROM ledger.event WHERE id = test.e()$$,
                  $$VALUES (60000::bigint, 75::bigint, interval '90 seconds')$$, 'the event row has them');
SELECT is(test.last_audit(), format('event.update event:%s by pgtap-s-admin', test.e()), 'audited');
SELECT is(test.last_change(), '{"before": {"max_balance": 50000, "topup_fee_card": 50, "reserve_timeout_s": 120},
                                   "after": {"max_balance": 60000, "topup_fee_card": 75, "reserve_timeout_s": 90}}'::jsonb,
          'the audit row holds the changed settings before and after');
CREATE TEMP TABLE before AS SELECT test.audits() AS n, pg_temp.footprint() AS f;
SELECT lives_ok($$SELECT api.admin_event_update(pg_temp.admin(), '{"max_balance": 60000}')$$, 'saving without a change');
SELECT is(test.audits(), (SELECT n FROM before), 'writes no audit row');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"min_topup": "ten"}')$$, pg_temp.admin())),
          '{"field": "min_topup"}'::jsonb, 'not a number: refused next to its field');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"min_topup": "ten"}')$$, pg_temp.admin()), 'FP001',
                 'validation: the minimum top-up must be a whole number', '... in words, not the field''s name');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"max_balance": 0}')$$, pg_temp.admin()), 'FP001',
                 'validation: the maximum balance must be more than 0.00 EUR', 'a maximum balance of 0: an amount in EUR');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"payout_fee": 9007199254740992}')$$, pg_temp.admin()), 'FP001',
                 'validation: the payout fee must be 0.00 to 90071992547409.91 EUR', 'a fee too large: the range it must lie in');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"reserve_timeout_s": "0"}')$$, pg_temp.admin()), 'FP001',
                 'validation: the reserve timeout must be 1 to 86400 seconds', 'a reserve timeout of 0 seconds: refused in words');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"min_topup": ""}')$$, pg_temp.admin())),
          '{"field": "min_topup"}'::jsonb, 'empty: refused next to its field');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"payout_fee": -1}')$$, pg_temp.admin())),
          '{"field": "payout_fee"}'::jsonb, 'a negative fee: refused next to its field');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"offline_log_size": 256}')$$, pg_temp.admin())),
          '{"field": "offline_log_size"}'::jsonb, 'an offline log of 256 entries: refused');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"offline_log_size": 256}')$$, pg_temp.admin()), 'FP001',
                 'validation: the offline log size must be 1 to 255 entries', '... saying the range');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"max_topup": 70000}')$$, pg_temp.admin())),
          '{"field": "max_topup"}'::jsonb, 'a maximum top-up above the maximum balance: refused next to max_topup');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"max_topup": 70000}')$$, pg_temp.admin()), 'FP001',
                 'validation: the maximum top-up must be at least the minimum top-up (5.00 EUR) and at most the maximum balance (600.00 EUR)',
                 '... naming both bounds in EUR');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"topup_fee_cash": 10, "topup_fee_online": 500}')$$, pg_temp.admin())),
          '{"field": "topup_fee_online"}'::jsonb, 'a top-up fee not below the minimum top-up: refused next to that fee');
SELECT throws_ok(format($$SELECT api.admin_event_update(%L, '{"topup_fee_cash": 10, "topup_fee_online": 500}')$$, pg_temp.admin()), 'FP001',
                 'validation: a top-up fee must be below the minimum top-up (5.00 EUR)', '... naming the minimum top-up in EUR');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"name": "Other"}')$$, pg_temp.admin())),
          '{"field": "name"}'::jsonb, 'a key that is no setting (the name): refused');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"seller_name": "Fest GmbH", "seller_street": "Weg 1"}')$$, pg_temp.admin())),
          '{"field": "seller_postcode"}'::jsonb, 'a seller without postcode: refused next to it (api.set_seller''s rule)');
SELECT is(test.error_detail(format($$SELECT api.admin_event_update(%L, '{"seller_name": "Fest GmbH", "seller_street": "Weg 1",
              "seller_postcode": "12345", "seller_city": "Musterstadt", "tax_number": "12-345"}')$$, pg_temp.admin())),
          '{"field": "tax_number"}'::jsonb, 'a bad tax number: refused next to it');
SELECT is(pg_temp.footprint(), (SELECT f FROM before), 'the refused updates saved nothing, not even in part');
SELECT is(api.admin_event_update(pg_temp.admin(), '{"seller_name": "Fest GmbH", "seller_street": "Weg 1", "seller_postcode": "12345",
              "seller_city": "Musterstadt", "tax_number": "12/345/67890", "vat_id": "de 123456789"}') ->> 'vat_id',
          'DE123456789', 'the seller with tax number and VAT id is saved (through api.set_seller)');
SELECT is(test.last_change() -> 'after', '{"seller_name": "Fest GmbH", "seller_street": "Weg 1", "seller_postcode": "12345",
              "seller_city": "Musterstadt", "tax_number": "12/345/67890", "vat_id": "DE123456789"}'::jsonb, 'and audited');

-- ---------------------------------------------------------------- merchants
SELECT results_eq(format($$SELECT name, archived, positions, sales FROM api.admin_merchants(%L)$$, test.admin_token('viewer')),
                  $$VALUES ('Bar'::text, false, 1, 0::bigint), ('Food', false, 1, 0)$$, 'the merchants page: positions and sales');
SELECT lives_ok($$SELECT api.reserve(test.bar(), 1, 'A0000001', 0, 900, test.items(test.e(), 'Beer:2'))$$, 'a sale at the bar');
SELECT is((SELECT outcome FROM api.replicate(test.bar(), jsonb_build_array(jsonb_build_object(
              'terminal_tx_number', 1, 'state', 'Committed', 'uid', 'A0000001', 'amount', 900)))), 'booked', 'it commits');
SELECT is((SELECT sales FROM api.admin_merchants(test.admin_token('viewer')) WHERE name = 'Bar'), 900::bigint, 'the bar''s sales: 9.00');
SELECT lives_ok($$INSERT INTO test.ctx SELECT 'wine', api.admin_merchant_save(pg_temp.admin(), NULL, ' Wine ', false)$$, 'a merchant is created');
SELECT results_eq($$SELECT m.name, a.kind::text, a.name FROM ledger.merchant m JOIN ledger.account a ON a.id = m.account_id
                     WHERE m.id = test.v('wine')$$, $$VALUES ('Wine'::text, 'merchant'::text, 'Wine'::text)$$,
                  'with its merchant account (through api.create_merchant), the name trimmed');
SELECT is(test.last_audit(), format('merchant.create merchant:%s by pgtap-s-admin', test.v('wine')), 'audited');
SELECT is(test.last_change(), jsonb_build_object('before', NULL, 'after', jsonb_build_object('id', test.v('wine'), 'name', 'Wine', 'archived', false)),
          'with the new merchant as after');
SELECT lives_ok($$SELECT api.admin_merchant_save(pg_temp.admin(), test.v('wine'), 'Wine & Co', false)$$, 'it is renamed');
SELECT is((SELECT a.name FROM ledger.merchant m JOIN ledger.account a ON a.id = m.account_id WHERE m.id = test.v('wine')),
          'Wine & Co', 'its account keeps the merchant''s name');
SELECT is(test.last_change(), '{"before": {"name": "Wine"}, "after": {"name": "Wine & Co"}}'::jsonb, 'audited: the name before and after');
SELECT is(test.error_detail($$SELECT api.admin_merchant_save(pg_temp.admin(), test.v('wine'), 'Bar', false)$$),
          '{"field": "name"}'::jsonb, 'a taken name: refused next to the field name');
SELECT is(test.error_detail($$SELECT api.admin_merchant_save(pg_temp.admin(), NULL, '  ', false)$$),
          '{"field": "name"}'::jsonb, 'an empty name: refused next to the field name');
SELECT throws_ok($$SELECT api.admin_merchant_save(pg_temp.admin(), -1, 'Ghost', false)$$, 'FP010', NULL, 'an unknown merchant: not-found');

-- ---------------------------------------------------------------- positions
SELECT results_eq(format($$SELECT name, kind, merchant, archived, terminals FROM api.admin_positions(%L)$$, test.admin_token('support')),
                  $$VALUES ('Bar'::text, 'sale'::text, 'Bar'::text, false, 1), ('Food', 'sale', 'Food', false, 2),
                           ('Top-up', 'topup', NULL, false, 2)$$, 'the positions page: kind, merchant, terminals');
SELECT lives_ok($$INSERT INTO test.ctx SELECT 'wpos', api.admin_position_save(pg_temp.admin(), NULL, 'Wine stand', 'sale', test.v('wine'), false)$$,
                'a sale position for the wine merchant is created');
SELECT is(test.last_audit(), format('position.create position:%s by pgtap-s-admin', test.v('wpos')), 'audited');
SELECT is(test.error_detail($$SELECT api.admin_position_save(pg_temp.admin(), NULL, 'Stand 2', 'sale', NULL, false)$$),
          '{"field": "merchant_id"}'::jsonb, 'a sale position without a merchant: refused next to merchant_id');
SELECT is(test.error_detail($$SELECT api.admin_position_save(pg_temp.admin(), NULL, 'Stand 2', 'bar', test.v('wine'), false)$$),
          '{"field": "kind"}'::jsonb, 'an unknown kind: refused next to kind');
SELECT is(test.error_detail($$SELECT api.admin_position_save(pg_temp.admin(), NULL, 'Stand 2', 'sale', -5, false)$$),
          '{"field": "merchant_id"}'::jsonb, 'a merchant of no event: refused next to merchant_id');
SELECT is(test.error_detail($$SELECT api.admin_position_save(pg_temp.admin(), NULL, 'Food', 'topup', NULL, false)$$),
          '{"field": "name"}'::jsonb, 'a taken name: refused next to name');
SELECT is(test.error_detail(format($$SELECT api.admin_position_save(pg_temp.admin(), %s, 'Bar', 'topup', NULL, false)$$, pg_temp.id('position', 'Bar'))),
          '{"field": "kind"}'::jsonb, 'a position with terminals keeps its kind');
SELECT throws_ok($$SELECT api.admin_position_save(pg_temp.admin(), test.v('wpos'), 'Wine stand', 'topup', test.v('wine'), false)$$,
                 'FP001', 'validation: a top-up position has no merchant', 'a top-up position with a merchant: refused, not dropped');
SELECT is(test.error_detail($$SELECT api.admin_position_save(pg_temp.admin(), NULL, 'Top-up 2', 'topup', test.v('wine'), false)$$),
          '{"field": "merchant_id"}'::jsonb, '... next to merchant_id (a new one too)');
SELECT lives_ok($$SELECT api.admin_position_save(pg_temp.admin(), test.v('wpos'), 'Wine stand', 'topup', NULL, false)$$,
                'a position without terminals may change its kind');
SELECT is(test.last_change(), jsonb_build_object('before', jsonb_build_object('kind', 'sale', 'merchant_id', test.v('wine')),
                                                    'after', jsonb_build_object('kind', 'topup', 'merchant_id', NULL)),
          'a top-up position has no merchant; audited');

-- ---------------------------------------------------------------- products
SELECT lives_ok($$INSERT INTO test.ctx SELECT 'wine glass', api.admin_product_save(pg_temp.admin(), NULL, 'Wine', 550, 19, true, false, false)$$,
                'a product is created');
SELECT results_eq(format($$SELECT name, price, vat_rate, fixed_price, returnable, archived FROM api.admin_products(%L) WHERE id = test.v('wine glass')$$, test.admin_token('finance')),
                  $$VALUES ('Wine'::text, 550::bigint, 19.00::numeric, true, false, false)$$, 'the products page lists it');
SELECT is(test.last_audit(), format('product.create product:%s by pgtap-s-admin', test.v('wine glass')), 'audited');
SELECT is(test.error_detail($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', NULL, 7, true, false, false)$$),
          '{"field": "price"}'::jsonb, 'a fixed-price product without a price: refused next to price');
SELECT is(test.error_detail($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', -1, 7, true, false, false)$$),
          '{"field": "price"}'::jsonb, 'a negative price: refused next to price');
SELECT throws_ok($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', -1, 7, true, false, false)$$, 'FP001',
                 'validation: the price must be 0.00 EUR or more', '... as an amount in EUR');
SELECT throws_ok($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', 9007199254740992, 7, true, false, false)$$, 'FP001',
                 'validation: the price must be 0.00 to 90071992547409.91 EUR', 'a price too large: refused with the range it must lie in');
SELECT is(test.error_detail($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', 300, 12, true, false, false)$$),
          '{"field": "vat_rate"}'::jsonb, 'a VAT rate of 12 % (no DSFinV-K rate: the receipt could not be signed): refused next to vat_rate');
SELECT throws_ok($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', 300, 12, true, false, false)$$, 'FP001',
                 'validation: the VAT rate must be one of 19 %, 7 %, 10.7 %, 5.5 % or 0 %', '... naming the rates ledger.vat_key knows');
SELECT is(test.error_detail(format($$SELECT api.admin_product_save(pg_temp.admin(), %s, 'Beer', 450, 12, true, false, false)$$,
                                   test.product(test.e(), 'Beer'))),
          '{"field": "vat_rate"}'::jsonb, 'changing a product to 12 %: refused next to vat_rate as well');
SELECT is(test.error_detail($$SELECT api.create_product(test.e(), 'Water', 300, 12)$$), '{"field": "vat_rate"}'::jsonb,
          'api.create_product (a DBA''s) refuses 12 % too');
SELECT throws_ok($$SELECT api.create_product(test.e(), 'Water', -5, 7)$$, 'FP001', 'validation: the price must be 0.00 EUR or more',
                 'api.create_product: a negative price, in EUR');
SELECT is(test.as_web($$SELECT api.admin_product_save(%1$s, NULL, 'Schnapps', 300, 10.7, true, false, false),
                               api.admin_product_save(%1$s, NULL, 'Cider', 300, 5.5, true, false, false)$$, 'admin'),
          'ok', 'the rates 10.7 % and 5.5 % are taken (tried and undone)');
SELECT is(test.error_detail($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', 300, 100, true, false, false)$$),
          '{"field": "vat_rate"}'::jsonb, 'a VAT rate of 100 %: refused next to vat_rate');
SELECT is(test.error_detail($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Water', 300, 7.005, true, false, false)$$),
          '{"field": "vat_rate"}'::jsonb, 'a VAT rate with three decimals: refused');
SELECT is(test.error_detail($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Jar', NULL, 0, false, true, false)$$),
          '{"field": "returnable"}'::jsonb, 'a returnable product without a fixed price: refused next to returnable');
SELECT is(test.error_detail($$SELECT api.admin_product_save(pg_temp.admin(), NULL, 'Beer', 300, 19, true, false, false)$$),
          '{"field": "name"}'::jsonb, 'a taken name: refused next to name');
SELECT lives_ok(format($$SELECT api.admin_product_save(pg_temp.admin(), %s, 'Beer', 500, 19, true, false, false)$$, test.product(test.e(), 'Beer')),
                'the beer costs 5.00 now');
SELECT is(test.last_change(), '{"before": {"price": 450}, "after": {"price": 500}}'::jsonb, 'audited: the price before and after');
SELECT results_eq($$SELECT name, unit_price::bigint, vat_rate FROM ledger.item WHERE transaction_id = test.bartx(1)$$,
                  $$VALUES ('Beer'::text, 450::bigint, 19.00::numeric(5,2))$$, 'the beer sold before keeps its price as sold');

-- ---------------------------------------------------------------- archived: not offered, not sellable, still reported
SELECT is(pg_temp.offered(test.food()), ARRAY['Beer', 'Cup', 'Pretzel', 'Tip', 'Wine'], 'the food terminal is offered every product');
SELECT lives_ok(format($$SELECT api.admin_product_save(pg_temp.admin(), %s, 'Pretzel', 350, 7, true, false, true)$$, test.product(test.e(), 'Pretzel')),
                'the pretzel is archived');
SELECT is(test.last_change(), '{"before": {"archived": false}, "after": {"archived": true}}'::jsonb, 'audited');
SELECT is(pg_temp.offered(test.food()), ARRAY['Beer', 'Cup', 'Tip', 'Wine'], 'an archived product is not offered in the terminal config');
SELECT throws_ok($$SELECT api.reserve(test.food(), 1, 'A0000001', 1, 350, test.items(test.e(), 'Pretzel:1'))$$, 'FP073', NULL,
                 'nor sold: a reserve of it is refused as archived');
SELECT is((SELECT outcome FROM api.replicate(test.food(), pg_temp.sale(2, 'A0000001', 1, 350, 'Pretzel:1'))), 'booked',
          'a pretzel the terminal sold offline before it learned of the archiving is booked (the tag was charged)');
SELECT ok((SELECT archived FROM api.admin_products(test.admin_token('viewer')) WHERE name = 'Pretzel'), 'the products page still lists it, archived');
SELECT lives_ok(format($$SELECT api.admin_merchant_save(pg_temp.admin(), %s, 'Food', true)$$, pg_temp.id('merchant', 'Food')),
                'the food merchant is archived');
SELECT throws_ok($$SELECT api.reserve(test.food(), 3, 'A0000001', 2, 500, test.items(test.e(), 'Beer:1'))$$, 'FP073', NULL,
                 'its positions sell nothing new (archived)');
SELECT is((SELECT outcome FROM api.replicate(test.food(), pg_temp.sale(4, 'A0000001', 2, 500, 'Beer:1'))), 'booked',
          'what they sold offline is booked');
SELECT lives_ok($$SELECT api.terminal_config(test.food())$$, 'its terminals still read their config (and sync tags)');
SELECT ok((SELECT archived FROM api.admin_positions(test.admin_token('viewer')) WHERE name = 'Food'),
          'the positions page lists the food position as archived (by its merchant)');
SELECT throws_ok(format($$SELECT api.admin_registration_code(pg_temp.admin(), %s)$$, pg_temp.id('position', 'Food')), 'FP073',
                 'archived: the merchant Food of position Food is archived: a terminal there could not sell',
                 'a position of an archived merchant gets no registration code');
SELECT is(test.error_detail(format($$SELECT api.admin_registration_code(pg_temp.admin(), %s)$$, pg_temp.id('position', 'Food'))),
          '{"field": "position_id"}'::jsonb, '... named next to the field position_id');
SELECT lives_ok(format($$SELECT api.admin_position_save(pg_temp.admin(), %s, 'Food', 'sale', %s, true)$$,
                       pg_temp.id('position', 'Food'), pg_temp.id('merchant', 'Food')),
                'the food position saved back as the page lists it (archived)');
SELECT ok(NOT (SELECT archived FROM ledger.position WHERE id = pg_temp.id('position', 'Food')),
          '... keeps its own flag: archived only by its merchant');
SELECT is((SELECT sales FROM api.admin_merchants(test.admin_token('viewer')) WHERE name = 'Food'), 850::bigint,
          'the archived merchant''s sales are still reported');
SELECT is(test.error_detail(format($$SELECT api.admin_position_save(pg_temp.admin(), NULL, 'Food 2', 'sale', %s, false)$$, pg_temp.id('merchant', 'Food'))),
          '{"field": "merchant_id"}'::jsonb, 'a new position cannot sell for an archived merchant');
SELECT lives_ok(format($$SELECT api.admin_merchant_save(pg_temp.admin(), %s, 'Food', false)$$, pg_temp.id('merchant', 'Food')),
                'the food merchant is back');
SELECT lives_ok($$SELECT api.reserve(test.food(), 5, 'A0000001', 3, 500, test.items(test.e(), 'Beer:1'))$$, 'and sells again');
SELECT ok(NOT (SELECT archived FROM api.admin_positions(test.admin_token('viewer')) WHERE name = 'Food'),
          'the positions page lists the food position as active again');
SELECT lives_ok(format($$SELECT api.admin_position_save(pg_temp.admin(), %s, 'Top-up', 'topup', NULL, true)$$, pg_temp.id('position', 'Top-up')),
                'the top-up position is archived');
SELECT throws_ok($$SELECT api.topup(test.v('top'), 10, 'A0000001', 1000, 'cash')$$, 'FP073', NULL, 'its terminal tops up nothing (archived)');
SELECT throws_ok(format($$SELECT api.admin_registration_code(pg_temp.admin(), %s)$$, pg_temp.id('position', 'Top-up')), 'FP073', NULL,
                 'an archived position gets no registration code');
SELECT is(test.error_detail(format($$SELECT api.admin_registration_code(pg_temp.admin(), %s)$$, pg_temp.id('position', 'Top-up'))),
          '{"field": "position_id"}'::jsonb, 'named next to the field position_id');

-- ---------------------------------------------------------------- terminals
SELECT lives_ok(format($$INSERT INTO test.res SELECT 'code', jsonb_build_object('code', api.admin_registration_code(pg_temp.admin(), %s))$$,
                       pg_temp.id('position', 'Bar')), 'a registration code for the bar');
SELECT ok(test.res('code', 'code') ~ '^[A-Z0-9]{12}$', 'twelve characters (api.create_registration_code)');
SELECT is(test.last_audit(), format('registration-code.create position:%s by pgtap-s-admin', pg_temp.id('position', 'Bar')),
          'audited');
SELECT ok(NOT (SELECT after::text LIKE '%' || test.res('code', 'code') || '%' FROM ledger.admin_audit ORDER BY id DESC LIMIT 1),
          'the audit row does not carry the code');
INSERT INTO test.ctx SELECT 'bar2', assignment_id FROM api.register_terminal(test.res('code', 'code'), 'bar tablet 2');
SELECT results_eq(format($$SELECT device, position, open_transactions, revoked_at FROM api.admin_terminals(%L) WHERE assignment_id = test.v('bar2')$$,
                         test.admin_token('viewer')),
                  $$VALUES ('bar tablet 2'::text, 'Bar'::text, 0, NULL::timestamptz)$$, 'the terminals page lists the new terminal');
SELECT results_eq(format($$SELECT open_transactions, last_seen FROM api.admin_terminals(%L) WHERE assignment_id = test.food()$$, test.admin_token('viewer')),
                  $$VALUES (1, now())$$, 'with its open transactions (the food reserve) and when it was last seen');
SELECT lives_ok($$SELECT api.reserve(test.v('bar2'), 1, 'A0000001', 4, 500, test.items(test.e(), 'Beer:1'))$$, 'the new terminal sells');
SELECT lives_ok($$SELECT api.admin_terminal_revoke(pg_temp.admin(), test.v('bar2'))$$, 'the admin revokes it');
SELECT is(test.last_audit(), format('terminal.revoke assignment:%s by pgtap-s-admin', test.v('bar2')), 'audited');
SELECT is(test.last_change(), jsonb_build_object('before', jsonb_build_object('device', 'bar tablet 2', 'revoked_at', NULL),
                                                    'after', jsonb_build_object('device', 'bar tablet 2', 'revoked_at', now())),
          'with revoked_at before and after');
SELECT is((SELECT revoked_at FROM api.admin_terminals(test.admin_token('viewer')) WHERE assignment_id = test.v('bar2')), now(),
          'the terminals page shows it revoked');
SELECT throws_ok($$SELECT api.reserve(test.v('bar2'), 2, 'A0000001', 5, 500, test.items(test.e(), 'Beer:1'))$$, 'FP072', NULL,
                 'its next reserve: terminal-revoked');
SELECT throws_ok($$SELECT * FROM api.replicate(test.v('bar2'), jsonb_build_array(jsonb_build_object(
                      'terminal_tx_number', 1, 'state', 'Committed', 'uid', 'A0000001', 'amount', 500)))$$, 'FP072', NULL,
                 'replication: terminal-revoked');
SELECT throws_ok($$SELECT * FROM api.tag_sync(test.v('bar2'), 'A0000001', 5, 0, '[]')$$, 'FP072', NULL, 'tag sync: terminal-revoked');
SELECT throws_ok($$SELECT api.terminal_config(test.v('bar2'))$$, 'FP072', NULL, 'config: terminal-revoked');
SELECT throws_ok($$SELECT * FROM api.terminal_transaction(test.v('bar2'), 1)$$, 'FP072', NULL, 'looking up its transaction: terminal-revoked');
SELECT throws_ok($$SELECT api.terminal_receipt(test.v('bar2'), 1)$$, 'FP072', NULL, 'its receipt: terminal-revoked');
SELECT throws_ok($$SELECT * FROM api.deposit_return(test.v('bar2'), 3, 'A0000001', test.items(test.e(), 'Cup:1'))$$, 'FP072', NULL,
                 'a deposit return: terminal-revoked');
SELECT is(test.money('A0000001'), 'balance 18250 held 1000', 'its reserve is still held (it expires or is resolved like any other)');
SELECT lives_ok($$SELECT api.reserve(test.bar(), 2, 'A0000001', 5, 500, test.items(test.e(), 'Beer:1'))$$,
                'the other bar terminal sells on');
CREATE TEMP TABLE revoked AS SELECT test.audits() AS n;
SELECT lives_ok($$SELECT api.admin_terminal_revoke(pg_temp.admin(), test.v('bar2'))$$, 'revoking it again is no error');
SELECT is(test.audits(), (SELECT n FROM revoked), '... and changes nothing (no audit row)');
SELECT throws_ok($$SELECT api.admin_terminal_revoke(pg_temp.admin(), -1)$$, 'FP010', NULL, 'an unknown assignment: not-found');

-- ---------------------------------------------------------------- tags
SELECT results_eq(format($$SELECT status, count FROM api.admin_tags(%L)$$, test.admin_token('support')),
                  $$VALUES ('new'::text, 0::bigint), ('active', 1), ('blocked', 0)$$, 'the tags page: counts by status, 0 included');
SELECT is(api.admin_tags_import(pg_temp.admin(), E'UID;PIN\r\n"B0:00:00:01";"1234"\r\n\r\nb0000002, 5678\nB0000003,0000\n'), 3,
          'three wristbands imported (header, quotes, colons, semicolons, blank lines, CRLF)');
SELECT results_eq($$SELECT uid, status::text, extensions.crypt('5678', pin_hash) = pin_hash FROM ledger.tag
                     WHERE event_id = test.e() AND uid = 'B0000002'$$,
                  $$VALUES ('B0000002'::text, 'new'::text, true)$$, 'each is new, its PIN hashed (through api.create_tag)');
SELECT is(test.last_change() -> 'after', '{"count": 3, "first_uid": "B0000001", "last_uid": "B0000003"}'::jsonb,
          'one audit row for the import: how many, first and last UID');
SELECT is((SELECT count FROM api.admin_tags(test.admin_token('viewer')) WHERE status = 'new'), 3::bigint, 'three new tags');
CREATE TEMP TABLE tags_before AS SELECT pg_temp.footprint() AS f;
SELECT throws_ok($$SELECT api.admin_tags_import(pg_temp.admin(), E'C0000001,1111\nC0000002,2222\nnot-hex,3333\n')$$, 'FP001',
                 'validation: line 3: ''not-hex'' is no tag UID: a tag UID is 8 to 20 hex digits', 'a bad UID is refused with its line number');
SELECT is(test.error_detail($$SELECT api.admin_tags_import(pg_temp.admin(), E'C0000001,1111\nC0000002,2222\nnot-hex,3333\n')$$),
          '{"field": "csv", "line": 3}'::jsonb, 'next to the field csv');
SELECT throws_ok($$SELECT api.admin_tags_import(pg_temp.admin(), E'uid,pin\nC0000001,1111\nC0000002\n')$$, 'FP001',
                 'validation: line 3: expected UID,PIN but found 1 fields', 'a line without PIN: refused with its number');
SELECT throws_ok($$SELECT api.admin_tags_import(pg_temp.admin(), E'C0000001,1111\nC0000001,2222\n')$$, 'FP001',
                 'validation: line 2: tag C0000001 exists already', 'a UID twice in the file: the second line is refused');
SELECT throws_ok($$SELECT api.admin_tags_import(pg_temp.admin(), E'C0000001,1111\nB0000003,2222\n')$$, 'FP001',
                 'validation: line 2: tag B0000003 exists already', 'a UID the event has: refused');
SELECT throws_ok($$SELECT api.admin_tags_import(pg_temp.admin(), E'C0000001,12\n')$$, 'FP001',
                 'validation: line 1: the PIN must be 4 to 32 letters or digits', 'a PIN of two digits: refused');
SELECT throws_ok($$SELECT api.admin_tags_import(pg_temp.admin(), E'UID,PIN\n\n')$$, 'FP001',
                 'validation: the file has no UID,PIN lines', 'a file without tags: refused');
SELECT is(pg_temp.footprint(), (SELECT f FROM tags_before), 'a refused import imports nothing, not even the good lines');

-- ---------------------------------------------------------------- who may call what: every function, every role
CREATE TEMP TABLE roles (role text PRIMARY KEY, n integer);
INSERT INTO roles VALUES ('admin', 1), ('finance', 2), ('support', 3), ('viewer', 4);
CREATE TEMP TABLE calls (fn text PRIMARY KEY, call text NOT NULL, allowed text[] NOT NULL);
INSERT INTO calls VALUES
    ('api.admin_event',             'SELECT api.admin_event(%1$s)', '{admin,finance,support,viewer}'),
    ('api.admin_event_update',      $$SELECT api.admin_event_update(%1$s, '{"offline_limit": 4000}')$$, '{admin}'),
    ('api.admin_merchants',         'SELECT * FROM api.admin_merchants(%1$s)', '{admin,finance,support,viewer}'),
    ('api.admin_merchant_save',     $$SELECT api.admin_merchant_save(%1$s, NULL, 'Matrix %2$s', false)$$, '{admin}'),
    ('api.admin_positions',         'SELECT * FROM api.admin_positions(%1$s)', '{admin,finance,support,viewer}'),
    ('api.admin_position_save',     $$SELECT api.admin_position_save(%1$s, NULL, 'Matrix %2$s', 'topup', NULL, false)$$, '{admin}'),
    ('api.admin_products',          'SELECT * FROM api.admin_products(%1$s)', '{admin,finance,support,viewer}'),
    ('api.admin_product_save',      $$SELECT api.admin_product_save(%1$s, NULL, 'Matrix %2$s', 100, 19, true, false, false)$$, '{admin}'),
    ('api.admin_terminals',         'SELECT * FROM api.admin_terminals(%1$s)', '{admin,finance,support,viewer}'),
    ('api.admin_registration_code', $$SELECT api.admin_registration_code(%1$s, test.v('food position'))$$, '{admin}'),
    ('api.admin_terminal_revoke',   $$SELECT api.admin_terminal_revoke(%1$s, test.v('m'))$$, '{admin}'),
    ('api.admin_tags',              'SELECT * FROM api.admin_tags(%1$s)', '{admin,finance,support,viewer}'),
    ('api.admin_tags_import',       $$SELECT api.admin_tags_import(%1$s, 'D0000001,1234')$$, '{admin}');
INSERT INTO test.ctx SELECT 'food position', pg_temp.id('position', 'Food');
GRANT SELECT ON roles, calls TO festpay_web;
GRANT SELECT ON test.res, test.ctx TO festpay_web;
SELECT is(test.as_web(c.call, r.role), 'ok', format('%s may call %s', r.role, c.fn))
  FROM calls c JOIN roles r ON r.role = ANY (c.allowed) ORDER BY c.fn, r.n;
CREATE TEMP TABLE footprint AS SELECT pg_temp.footprint() AS f;
SET ROLE festpay_web;
SELECT throws_ok(format(c.call, quote_literal(test.admin_token(r.role)), r.role), 'FP071', NULL,
                 format('%s may not call %s: admin-forbidden', r.role, c.fn))
  FROM calls c JOIN roles r ON NOT r.role = ANY (c.allowed) ORDER BY c.fn, r.n;
SELECT throws_ok(format(c.call, quote_literal('no-such-token'), 'nobody'), 'FP070', NULL,
                 format('without a valid session, %s: admin-unauthenticated', c.fn))
  FROM calls c ORDER BY c.fn;
RESET ROLE;
SELECT is(pg_temp.footprint(), (SELECT f FROM footprint),
          'the refused calls changed nothing (event, catalogue, terminals, codes, tags, audit log)');

SELECT * FROM finish();
ROLLBACK;
