-- Helpers for the pgTAP suites (schema test), loaded once into the test database before the suites run:
--   psql "$URL" -v ON_ERROR_STOP=1 -f tests/pgtap_setup.sql   (the pytest run does this itself)
-- They only call api functions and read ledger tables; suites stay one file per topic.

CREATE EXTENSION IF NOT EXISTS pgtap;
DROP SCHEMA IF EXISTS test CASCADE;
CREATE SCHEMA test;
GRANT USAGE ON SCHEMA test TO PUBLIC;

CREATE FUNCTION test.event(p_name text DEFAULT 'Test Festival', p_topup_fee_card bigint DEFAULT 50,
                           p_payout_fee bigint DEFAULT 100, p_reserve_timeout_s integer DEFAULT 120)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Creates an event (max balance 50000, top-ups 500..25000) with merchants Bar and Food, positions Bar and Food
-- (sale) and Top-up, products Beer (450, 19%), Pretzel (350, 7%), Tip (variable, 0%) and Cup (200, returnable).
-- Returns the event id.
DECLARE
    e bigint := api.create_event(p_name, 'EUR', 50000, 500, 25000, p_topup_fee_card => p_topup_fee_card,
                                 p_payout_fee => p_payout_fee, p_reserve_timeout_s => p_reserve_timeout_s);
BEGIN
    PERFORM api.create_position(e, 'Bar', 'sale', api.create_merchant(e, 'Bar'));
    PERFORM api.create_position(e, 'Food', 'sale', api.create_merchant(e, 'Food'));
    PERFORM api.create_position(e, 'Top-up', 'topup');
    PERFORM api.create_product(e, 'Beer', 450, 19);
    PERFORM api.create_product(e, 'Pretzel', 350, 7);
    PERFORM api.create_product(e, 'Tip', NULL, 0, p_fixed_price => false);
    PERFORM api.create_product(e, 'Cup', 200, 0, p_returnable => true);
    RETURN e;
END
$$;

CREATE FUNCTION test.terminal(p_event bigint, p_position text)
RETURNS bigint LANGUAGE sql AS $$
-- Registers a terminal for a position of the event.
-- Returns its assignment id.
    SELECT assignment_id FROM api.register_terminal(api.create_registration_code(p_event, p_position), 'test ' || p_position);
$$;

CREATE FUNCTION test.product(p_event bigint, p_name text)
RETURNS bigint LANGUAGE sql STABLE AS $$
-- The id of a product of the event by name.
    SELECT id FROM ledger.product WHERE event_id = p_event AND name = p_name;
$$;

CREATE FUNCTION test.items(p_event bigint, VARIADIC p_spec text[])
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- Builds an items list from 'Name:quantity' (or 'Name:quantity:unit_price') strings.
-- Returns the JSON array api.reserve and api.replicate take.
    SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'product_id', test.product(p_event, split_part(s, ':', 1)),
               'quantity', split_part(s, ':', 2)::integer,
               'unit_price', nullif(split_part(s, ':', 3), '')::bigint)) ORDER BY o)
      FROM unnest(p_spec) WITH ORDINALITY AS x(s, o);
$$;

CREATE FUNCTION test.funded_tag(p_event bigint, p_uid text, p_amount bigint DEFAULT 10000)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Tops up a tag with cash at a fresh Top-up terminal (no fee for cash).
-- Returns the tag's balance after.
DECLARE
    a bigint := test.terminal(p_event, 'Top-up');
BEGIN
    RETURN (SELECT balance FROM api.topup(a, 1, p_uid, p_amount, 'cash'));
END
$$;

CREATE FUNCTION test.balance(p_event bigint, p_uid text)
RETURNS bigint LANGUAGE sql STABLE AS $$
-- The running balance of a tag's customer account.
    SELECT a.balance FROM ledger.tag t JOIN ledger.account a ON a.id = t.account_id
     WHERE t.event_id = p_event AND t.uid = upper(p_uid);
$$;

CREATE FUNCTION test.held(p_event bigint, p_uid text)
RETURNS bigint LANGUAGE sql STABLE AS $$
-- The held (reserved) amount of a tag's customer account.
    SELECT a.held FROM ledger.tag t JOIN ledger.account a ON a.id = t.account_id
     WHERE t.event_id = p_event AND t.uid = upper(p_uid);
$$;

CREATE FUNCTION test.account_balance(p_event bigint, p_kind text, p_name text)
RETURNS bigint LANGUAGE sql STABLE AS $$
-- The balance of any account of the event, derived from the booking lines (received minus paid).
    SELECT balance FROM report.account_balance WHERE event_id = p_event AND kind::text = p_kind AND name = p_name;
$$;

CREATE FUNCTION test.state(p_tx bigint)
RETURNS text LANGUAGE sql STABLE AS $$
-- The backend state of a transaction.
    SELECT state::text FROM ledger.transaction WHERE id = p_tx;
$$;

CREATE FUNCTION test.lines(p_tx bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
-- How many booking lines a transaction has.
    SELECT count(*)::integer FROM ledger.booking WHERE transaction_id = p_tx;
$$;

CREATE FUNCTION test.violations(p_tx bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
-- How many violations were logged for a transaction.
    SELECT count(*)::integer FROM ledger.violation WHERE transaction_id = p_tx;
$$;
