-- Helpers for the pgTAP suites (schema test), loaded once into the test database before the suites run:
--   psql "$URL" -v ON_ERROR_STOP=1 -f tests/pgtap_setup.sql   (the pytest run does this itself)
-- They only call api functions and read ledger tables (plus the scratch tables test.ctx and test.res, whose rows
-- each suite's ROLLBACK removes; and test.admin_user, which inserts fixture admin users with a fast bcrypt cost);
-- suites stay one file per topic. The helpers from "scratch and lookups" on were
-- the suites' own pg_temp helpers once, and stay VOLATILE like them (a fresh snapshot at every call).

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

-- ---------------------------------------------------------------- scratch and lookups shared by the suites
-- Key-value scratch of a suite: ids it made (ctx) and api answers it kept (res). Every suite ends in ROLLBACK, so its
-- rows never outlive it; a second suite run at the same time waits for the first one's keys (the primary keys).
CREATE TABLE test.ctx (k text PRIMARY KEY, v bigint);
CREATE TABLE test.res (k text PRIMARY KEY, j jsonb);

CREATE FUNCTION test.v(p_k text)
RETURNS bigint LANGUAGE sql AS $$
-- Looks a key up in the suite's scratch table test.ctx.
-- Returns its value (an id, a balance, a count), or NULL when the key is not there.
    SELECT v FROM test.ctx WHERE k = p_k;
$$;

CREATE FUNCTION test.res(p_k text, p_field text)
RETURNS text LANGUAGE sql AS $$
-- Reads one field of an api answer the suite kept in test.res under a key.
-- Returns the field as text (j ->> field), or NULL when the key or the field is not there.
    SELECT j ->> p_field FROM test.res WHERE k = p_k;
$$;

CREATE FUNCTION test.e()
RETURNS bigint LANGUAGE sql AS $$
-- The suite's event: the shorthand of test.v('e').
-- Returns the event id the suite stored under 'e' in test.ctx.
    SELECT test.v('e');
$$;

CREATE FUNCTION test.bar()
RETURNS bigint LANGUAGE sql AS $$
-- The suite's Bar terminal: the shorthand of test.v('bar').
-- Returns the assignment id the suite stored under 'bar' in test.ctx.
    SELECT test.v('bar');
$$;

CREATE FUNCTION test.food()
RETURNS bigint LANGUAGE sql AS $$
-- The suite's Food terminal: the shorthand of test.v('food').
-- Returns the assignment id the suite stored under 'food' in test.ctx.
    SELECT test.v('food');
$$;

CREATE FUNCTION test.bartx(p_number bigint)
RETURNS bigint LANGUAGE sql AS $$
-- Finds the transaction the suite's Bar terminal (test.bar()) knows by its terminal transaction number.
-- Returns the transaction id, or NULL when there is none.
    SELECT id FROM ledger.transaction WHERE assignment_id = test.bar() AND terminal_tx_number = p_number;
$$;

-- ---------------------------------------------------------------- replication and tag log entries of the Bar terminal
-- Both carry the suite's terminal time, kept in test.res under 'entry', e.g.
--   INSERT INTO test.res VALUES ('entry', '{"time": "2025-07-04T21:30:00+02:00"}');

CREATE FUNCTION test.entry(p_number integer, p_state text, p_uid text, p_tag_no integer, p_amount bigint,
                           VARIADIC p_items text[])
RETURNS jsonb LANGUAGE sql AS $$
-- Builds one purchase replication entry of the Bar terminal, items as for test.items ('Name:quantity[:unit_price]').
-- Returns the entry object api.replicate takes (time: test.res('entry', 'time')).
    SELECT jsonb_build_object('terminal_tx_number', p_number, 'type', 'purchase', 'state', p_state, 'uid', p_uid,
                              'tag_tx_number', p_tag_no, 'time', test.res('entry', 'time'), 'amount', p_amount,
                              'items', test.items(test.e(), VARIADIC p_items));
$$;

CREATE FUNCTION test.replicate(p_entry jsonb)
RETURNS TABLE (state text, outcome text, problem text) LANGUAGE sql AS $$
-- Replicates one entry at the suite's Bar terminal.
-- Returns api.replicate's answer for it: state, outcome, problem.
    SELECT state, outcome, problem FROM api.replicate(test.bar(), jsonb_build_array(p_entry));
$$;

CREATE FUNCTION test.mac(p_assignment bigint, p_number bigint, p_uid text, p_tag_no bigint, p_amount bigint)
RETURNS text LANGUAGE sql AS $$
-- The MAC a terminal writes with a charge in a tag's log (SPEC 7), computed here on its own (not by the ledger):
-- base64 HMAC-SHA256 keyed with the assignment's secret over assignment, number, UID, tag number and amount, one a line.
-- Returns it, or NULL for an unknown assignment.
    SELECT encode(extensions.hmac(convert_to(concat_ws(E'\n', p_assignment, p_number, upper(translate(p_uid, ': ', '')),
                                                       p_tag_no, p_amount), 'UTF8'), a.secret, 'sha256'), 'base64')
      FROM ledger.assignment a WHERE a.id = p_assignment;
$$;

CREATE FUNCTION test.logentry(p_uid text, p_number integer, p_tag_no integer, p_amount bigint,
                              p_assignment bigint DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
-- Builds one tag log entry of tag p_uid written by the suite's Bar terminal (or p_assignment), with its MAC (test.mac).
-- Returns the entry object api.tag_sync takes (time: test.res('entry', 'time')).
    SELECT jsonb_build_object('assignment_id', a, 'terminal_tx_number', p_number, 'tag_tx_number', p_tag_no,
                              'amount', p_amount, 'time', test.res('entry', 'time'),
                              'mac', test.mac(a, p_number, p_uid, p_tag_no, p_amount))
      FROM (SELECT coalesce(p_assignment, test.bar()) AS a) x;
$$;

-- ---------------------------------------------------------------- what the ledger holds
CREATE FUNCTION test.money(p_uid text)
RETURNS text LANGUAGE sql AS $$
-- Describes a tag's money in the suite's event (test.e()).
-- Returns 'balance <balance> held <held>'.
    SELECT format('balance %s held %s', test.balance(test.e(), p_uid), test.held(test.e(), p_uid));
$$;

CREATE FUNCTION test.booking_lines(p_tx bigint)
RETURNS TABLE (debit text, credit text, amount bigint) LANGUAGE sql AS $$
-- Lists the booking lines of a transaction in line order, accounts named kind:name (test.lines only counts them).
-- Returns one row a line: debit (receives), credit (pays), amount.
    SELECT d.kind || ':' || d.name, c.kind || ':' || c.name, b.amount
      FROM ledger.booking b
      JOIN ledger.account d ON d.id = b.debit_account_id
      JOIN ledger.account c ON c.id = b.credit_account_id
     WHERE b.transaction_id = p_tx ORDER BY b.line_no;
$$;

CREATE FUNCTION test.footprint(p_event bigint)
RETURNS text LANGUAGE sql AS $$
-- Counts the transactions and booking lines of an event, for "nothing changed" checks.
-- Returns '<n> transactions, <m> lines'.
    SELECT (SELECT count(*) FROM ledger.transaction WHERE event_id = p_event) || ' transactions, '
        || (SELECT count(*) FROM ledger.booking b JOIN ledger.transaction t ON t.id = b.transaction_id
             WHERE t.event_id = p_event) || ' lines';
$$;

CREATE FUNCTION test.error_detail(p_sql text)
RETURNS jsonb LANGUAGE plpgsql AS $$
-- Runs a statement and catches the error it raises; its effects are undone either way.
-- Returns the error's DETAIL as JSON, or NULL when it raises none.
DECLARE
    v_detail text;
BEGIN
    BEGIN
        EXECUTE p_sql;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        RETURN v_detail::jsonb;
    END;
    RAISE EXCEPTION 'no error' USING ERRCODE = 'P0001';
EXCEPTION WHEN raise_exception THEN
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------- admin users, sessions and the audit log
-- The admin suites' fixture users have the password 'pw-' || name; test.admin_sessions signs one in per role and keeps
-- their tokens in test.res under 'tok', which test.admin_token and test.as_web read.

CREATE FUNCTION test.admin_user(p_name text, p_role text)
RETURNS bigint LANGUAGE sql AS $$
-- Creates a fixture admin user with password 'pw-' || name, hashed with bcrypt cost 4 (fast; the api hashes with 12).
-- Returns the user's id.
    INSERT INTO ledger.admin_user (username, password_hash, role)
    VALUES (p_name, extensions.crypt('pw-' || p_name, extensions.gen_salt('bf', 4)), p_role) RETURNING id;
$$;

CREATE FUNCTION test.admin_sign_in(p_name text, p_password text DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
-- Signs a fixture admin user in (client 'pgTAP') with p_password, or with its own 'pw-' || name when that is NULL.
-- Returns the session token, or NULL when the sign-in is refused.
    SELECT token FROM api.admin_sign_in(p_name, coalesce(p_password, 'pw-' || p_name), 'pgTAP');
$$;

CREATE FUNCTION test.admin_sessions(p_prefix text)
RETURNS TABLE (role text, user_id bigint) LANGUAGE plpgsql AS $$
-- Creates a fixture admin user p_prefix || role for each role (admin, finance, support, viewer) and signs it in,
-- keeping the tokens in test.res under 'tok' as {role: token}. Returns one row per role: the role, its user's id.
DECLARE
    v_tokens jsonb := '{}';
BEGIN
    FOREACH role IN ARRAY ARRAY['admin', 'finance', 'support', 'viewer'] LOOP
        user_id := test.admin_user(p_prefix || role, role);
        v_tokens := v_tokens || jsonb_build_object(role, test.admin_sign_in(p_prefix || role));
        RETURN NEXT;
    END LOOP;
    INSERT INTO test.res VALUES ('tok', v_tokens);
END
$$;

CREATE FUNCTION test.admin_token(p_role text)
RETURNS text LANGUAGE sql AS $$
-- The session token of the fixture user of a role that test.admin_sessions signed in (test.res under 'tok').
-- Returns it, or NULL for a role without one.
    SELECT test.res('tok', p_role);
$$;

CREATE FUNCTION test.as_role(p_role text, p_sql text)
RETURNS text LANGUAGE plpgsql AS $$
-- Runs p_sql as the login role p_role and undoes it.
-- Returns 'ok' when it ran, else its SQLSTATE.
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_role);
        EXECUTE p_sql;
        RAISE EXCEPTION USING ERRCODE = 'P0099';
    EXCEPTION
        WHEN SQLSTATE 'P0099' THEN RETURN 'ok';
        WHEN OTHERS THEN RETURN SQLSTATE;
    END;
END
$$;

CREATE FUNCTION test.as_web(p_sql text, p_role text)
RETURNS text LANGUAGE sql AS $$
-- Runs p_sql as festpay_web and undoes it (test.as_role), %1$s replaced by the quoted token of p_role (a role without
-- one, e.g. 'nobody', gets a token of no session) and %2$s by p_role. Returns 'ok' when it ran, else its SQLSTATE.
    SELECT test.as_role('festpay_web',
                        format(p_sql, quote_literal(coalesce(test.admin_token(p_role), 'no such session')), p_role));
$$;

CREATE FUNCTION test.last_audit()
RETURNS text LANGUAGE sql AS $$
-- Describes the newest admin audit row: what was done to which object by whom.
-- Returns '<action> <object> by <username>' ('by a DBA' when no admin user did it), or NULL without audit rows.
    SELECT format('%s %s by %s', a.action, a.object, coalesce(u.username, 'a DBA'))
      FROM ledger.admin_audit a LEFT JOIN ledger.admin_user u ON u.id = a.user_id ORDER BY a.id DESC LIMIT 1;
$$;

CREATE FUNCTION test.last_change()
RETURNS jsonb LANGUAGE sql AS $$
-- The change the newest admin audit row records.
-- Returns {"before": ..., "after": ...} as the row has them.
    SELECT jsonb_build_object('before', before, 'after', after) FROM ledger.admin_audit ORDER BY id DESC LIMIT 1;
$$;

CREATE FUNCTION test.audits()
RETURNS bigint LANGUAGE sql AS $$
-- Counts the admin audit rows, for "no audit row written" checks.
-- Returns the count.
    SELECT count(*) FROM ledger.admin_audit;
$$;
