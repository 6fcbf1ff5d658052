SET LOCAL ROLE festpay_owner;

-- CREATE OR REPLACE cannot change a function's result type, and a changed argument list would add an overload:
-- functions whose shape differs from the one created below are dropped first (nothing happens on a database that
-- has the current shape).
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE (p.pronamespace = 'ledger'::regnamespace
                     AND ((p.proname IN ('book', 'apply_to_customer', 'enqueue', 'same_request')
                           AND p.prorettype <> 'bigint'::regtype)
                       OR (p.proname = 'add_items' AND (p.prorettype <> 'integer'::regtype OR p.pronargs <> 6))
                       OR (p.proname = 'terminal_context' AND p.pronargs <> 3)
                       OR (p.proname = 'json_int' AND p.pronargs <> 4)
                       OR (p.proname = 'replicate_one' AND (p.proretset OR p.pronargs <> 3))
                       OR (p.proname = 'same_request' AND p.pronargs <> 7)
                       OR (p.proname = 'new_transaction' AND p.pronargs <> 17)))
                 -- the first api.tse_started returned nothing (and overwrote an earlier start): see 50_fiscal.sql
                 OR (p.pronamespace = 'api'::regnamespace AND p.proname = 'tse_started'
                     AND p.prorettype = 'void'::regtype)
                 -- api.tag_sync takes 5 arguments and answers 7 columns (uid ... acknowledged, refused)
                 OR (p.pronamespace = 'api'::regnamespace AND p.proname = 'tag_sync'
                     AND coalesce(array_length(p.proallargtypes, 1), 0) <> 12)
                 -- the portal's and the relay's shapes (73_portal.sql, 74_online_topup.sql): arguments + columns
                 OR (p.pronamespace = 'api'::regnamespace
                     AND ((p.proname = 'portal_balance' AND coalesce(array_length(p.proallargtypes, 1), 0) <> 6)
                       OR (p.proname = 'provider_request' AND coalesce(array_length(p.proallargtypes, 1), 0) <> 6)
                       OR (p.proname = 'portal_topup_status' AND coalesce(array_length(p.proallargtypes, 1), 0) <> 7)))
                 -- ledger.provider_work decides from the whole checkout row, not from its refund state alone
                 OR (p.pronamespace = 'ledger'::regnamespace AND p.proname = 'provider_work'
                     AND p.proargtypes[0] = 'text'::regtype) LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$$;

-- Core of the ledger: named errors, input parsing, the state machine and the booking engine.
-- Every api function builds on these; nothing here is callable by the gateway or report roles.
-- These ledger.* functions are not SECURITY DEFINER and carry no SET search_path: they run only inside api
-- functions, which fix the search path, and they qualify every name. (A SET clause on each of the ~30 nested
-- calls per booking costs a GUC save/restore each time: measured 23% of purchase throughput.)

CREATE OR REPLACE FUNCTION ledger.fail(p_slug text, p_message text, p_detail jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
-- Raises the named problem p_slug (see ledger.problem) with a message and a JSON detail.
-- Never returns.
DECLARE
    v_sqlstate text;
BEGIN
    SELECT sqlstate INTO v_sqlstate FROM ledger.problem WHERE slug = p_slug;
    IF v_sqlstate IS NULL THEN
        RAISE EXCEPTION 'unknown problem type %', p_slug;
    END IF;
    RAISE EXCEPTION USING ERRCODE = v_sqlstate, MESSAGE = p_slug || ': ' || p_message,
        DETAIL = coalesce(p_detail, '{}'::jsonb)::text;
END
$$;

CREATE OR REPLACE FUNCTION ledger.json_int(p_obj jsonb, p_key text, p_required boolean DEFAULT true,
                                           p_positive boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
-- Reads the integer field p_key of a JSON object; with p_positive it must be more than 0 (the caller saves a
-- ledger.positive call on the way through: ~6,600 CPU instructions). Returns it (NULL when absent and not required);
-- raises validation when missing, not a number, not whole, or (through ledger.positive) not positive when it must be.
DECLARE
    v jsonb := p_obj -> p_key;
    n numeric;
BEGIN
    IF jsonb_typeof(v) = 'number' THEN
        n := v::numeric;
        IF n = trunc(n) AND abs(n) <= 9007199254740991 AND (n > 0 OR NOT p_positive) THEN
            RETURN n;
        ELSIF n = trunc(n) AND abs(n) <= 9007199254740991 THEN
            RETURN ledger.positive(n::bigint, p_key);           -- 0 or less: raises its validation error
        END IF;
    ELSIF v IS NULL OR v = 'null'::jsonb THEN
        IF p_required THEN
            PERFORM ledger.fail('validation', format('%s is required', p_key), jsonb_build_object('field', p_key));
        END IF;
        RETURN NULL;
    END IF;
    PERFORM ledger.fail('validation', format('%s must be a whole number', p_key), jsonb_build_object('field', p_key));
END
$$;

CREATE OR REPLACE FUNCTION ledger.json_time(p_obj jsonb, p_key text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
-- Reads the optional RFC 3339 time field p_key of a JSON object (no EXCEPTION block: it would open a
-- subtransaction on every call). Returns it, or NULL when absent; raises validation when it is not an RFC 3339
-- time, or datetime_field_overflow (22008, a data exception) for a well-formed but impossible date.
BEGIN
    IF jsonb_typeof(p_obj -> p_key) IS NULL OR jsonb_typeof(p_obj -> p_key) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_obj -> p_key) <> 'string'
       OR (p_obj ->> p_key) !~ '^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$' THEN
        PERFORM ledger.fail('validation', format('%s must be an RFC 3339 time', p_key), jsonb_build_object('field', p_key));
    END IF;
    RETURN (p_obj ->> p_key)::timestamptz;
END
$$;

CREATE OR REPLACE FUNCTION ledger.positive(p_value bigint, p_field text)
RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks that an amount or number is present and greater than zero.
-- Returns it; raises validation otherwise.
BEGIN
    IF p_value IS NULL OR p_value <= 0 THEN
        PERFORM ledger.fail('validation', format('%s must be greater than 0', p_field), jsonb_build_object('field', p_field));
    END IF;
    RETURN p_value;
END
$$;

CREATE OR REPLACE FUNCTION ledger.tag_number(p_value bigint)
RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks a tag transaction number (optional): a whole number from 0 to 2^31 - 1.
-- Returns it as integer (NULL stays NULL); raises validation otherwise.
BEGIN
    IF p_value < 0 OR p_value > 2147483647 THEN
        PERFORM ledger.fail('validation', 'tag_tx_number must be between 0 and 2147483647', '{"field": "tag_tx_number"}');
    END IF;
    RETURN p_value;
END
$$;

CREATE OR REPLACE FUNCTION ledger.normalize_uid(p_uid text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
-- Normalises a tag UID to upper-case hex without separators (spaces and colons).
-- Returns it; raises validation when it is not 4 to 10 bytes of hex. (No regular expression: cheaper per call.)
DECLARE
    v text := upper(translate(btrim(p_uid), ': ', ''));
BEGIN
    IF length(v) BETWEEN 8 AND 20 AND ltrim(v, '0123456789ABCDEF') = '' THEN
        RETURN v;
    END IF;
    PERFORM ledger.fail('validation', format('tag UID %L is not 4 to 10 bytes of hex', p_uid), '{"field": "uid"}');
END
$$;

CREATE OR REPLACE FUNCTION ledger.system_account(p_event_id bigint, p_kind ledger.account_kind, p_name text)
RETURNS bigint LANGUAGE sql STABLE AS $$
-- Finds a system account of an event by kind and name (e.g. topup/card, fee/fees).
-- Returns its id, or NULL when there is none.
    SELECT id FROM ledger.account WHERE event_id = p_event_id AND kind = p_kind AND name = p_name;
$$;

CREATE OR REPLACE FUNCTION ledger.find_tag(p_event_id bigint, p_uid text, p_create boolean DEFAULT false)
RETURNS ledger.tag LANGUAGE plpgsql AS $$
-- Finds the tag p_uid of an event, creating it (status new, with its customer account) when p_create.
-- Returns the tag row; raises not-found when it does not exist and p_create is false.
DECLARE
    v_uid text := ledger.normalize_uid(p_uid);
    v_tag ledger.tag;
    v_account bigint;
BEGIN
    SELECT * INTO v_tag FROM ledger.tag WHERE event_id = p_event_id AND uid = v_uid;
    IF FOUND THEN
        RETURN v_tag;
    END IF;
    IF NOT p_create THEN
        PERFORM ledger.fail('not-found', format('tag %s is not known', v_uid), jsonb_build_object('uid', v_uid));
    END IF;
    -- Concurrent first sightings of one UID converge on the same account and tag.
    INSERT INTO ledger.account (event_id, kind, name) VALUES (p_event_id, 'customer', v_uid)
        ON CONFLICT ON CONSTRAINT account_name_unique DO NOTHING;
    SELECT id INTO v_account FROM ledger.account WHERE event_id = p_event_id AND kind = 'customer' AND name = v_uid;
    INSERT INTO ledger.tag (event_id, uid, account_id) VALUES (p_event_id, v_uid, v_account)
        ON CONFLICT ON CONSTRAINT tag_uid_unique DO NOTHING;
    SELECT * INTO v_tag FROM ledger.tag WHERE event_id = p_event_id AND uid = v_uid;
    RETURN v_tag;
END
$$;

CREATE OR REPLACE FUNCTION ledger.lock_account(p_account_id bigint)
RETURNS ledger.account LANGUAGE plpgsql AS $$
-- Locks a customer account row for the rest of the transaction (lock order: accounts by id, then transactions).
-- Returns the locked row with its current balance and held amount.
DECLARE
    a ledger.account;
BEGIN
    SELECT * INTO a FROM ledger.account WHERE id = p_account_id FOR NO KEY UPDATE;
    RETURN a;
END
$$;

CREATE OR REPLACE FUNCTION ledger.lock_tag(p_event_id bigint, p_uid text, p_create boolean DEFAULT false,
                                           OUT tag ledger.tag, OUT account ledger.account)
LANGUAGE plpgsql AS $$
-- ledger.find_tag and ledger.lock_account in one: finds (or, when p_create, creates) the tag p_uid and locks its
-- customer account for the rest of the transaction -- one query for a known tag, as every sale has.
-- Returns the tag and the locked account row, both NULL when the tag does not exist and p_create is false.
DECLARE
    v_uid text := ledger.normalize_uid(p_uid);
    r record;
BEGIN
    SELECT g, a INTO r
      FROM ledger.tag g JOIN ledger.account a ON a.id = g.account_id
     WHERE g.event_id = p_event_id AND g.uid = v_uid
       FOR NO KEY UPDATE OF a;
    IF FOUND THEN
        tag := r.g;
        account := r.a;
    ELSIF p_create THEN
        tag := ledger.find_tag(p_event_id, v_uid, true);
        account := ledger.lock_account(tag.account_id);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ledger.assignment_event(p_assignment_id bigint)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
-- The event of a registered terminal assignment, from the assignment row alone (what replication needs).
-- Returns the event id; raises not-found for an unknown assignment, terminal-revoked for a revoked one.
DECLARE
    v_event_id bigint;
    v_revoked_at timestamptz;
BEGIN
    SELECT a.event_id, a.revoked_at INTO v_event_id, v_revoked_at FROM ledger.assignment a WHERE a.id = p_assignment_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('assignment %s is not registered', p_assignment_id),
                            jsonb_build_object('assignment_id', p_assignment_id));
    ELSIF v_revoked_at IS NOT NULL THEN
        PERFORM ledger.fail('terminal-revoked', format('assignment %s was revoked by an admin', p_assignment_id),
                            jsonb_build_object('assignment_id', p_assignment_id));
    END IF;
    RETURN v_event_id;
END
$$;

CREATE OR REPLACE FUNCTION ledger.terminal_context(
    p_assignment_id bigint, p_kind ledger.position_kind DEFAULT NULL, p_offline boolean DEFAULT false,
    OUT event_id bigint, OUT merchant_account_id bigint, OUT cash_account_id bigint, OUT reserve_timeout interval)
LANGUAGE plpgsql STABLE AS $$
-- Looks up what a terminal assignment may do: its event, its merchant's account, its cash drawer and the
-- event's reserve timeout. With p_kind (a sale or top-up decided now) its position and merchant must not be
-- archived, unless p_offline: a sale the terminal already made offline is taken all the same.
-- Raises not-found for an unknown assignment, terminal-revoked for a revoked one, wrong-position when its position is
-- not of kind p_kind, archived.
DECLARE
    v_kind ledger.position_kind;
    v_archived boolean;
BEGIN
    -- Row by row from the assignment (LATERAL ... OFFSET 0): as a plain join the planner hashes the small position
    -- table, and building that hash table on every call cost more than the rest of the lookup. A revoked assignment
    -- is not found here (one comparison); ledger.assignment_event then names the reason.
    SELECT a.event_id, m.account_id, a.cash_account_id, e.reserve_timeout, p.kind, p.archived OR m.archived IS TRUE
      INTO event_id, merchant_account_id, cash_account_id, reserve_timeout, v_kind, v_archived
      FROM ledger.assignment a
      JOIN ledger.event e ON e.id = a.event_id
      CROSS JOIN LATERAL (SELECT p.kind, p.merchant_id, p.archived FROM ledger.position p WHERE p.id = a.position_id OFFSET 0) p
      LEFT JOIN LATERAL (SELECT m.account_id, m.archived FROM ledger.merchant m WHERE m.id = p.merchant_id OFFSET 0) m ON true
     WHERE a.id = p_assignment_id AND a.revoked_at IS NULL;
    IF NOT FOUND THEN
        PERFORM ledger.assignment_event(p_assignment_id);          -- raises not-found or terminal-revoked
    END IF;
    IF p_kind IS NOT NULL AND v_kind <> p_kind THEN
        PERFORM ledger.fail('wrong-position', format('this is a %s position, not a %s position', v_kind, p_kind),
                            jsonb_build_object('position_kind', v_kind));
    END IF;
    IF v_archived AND p_kind IS NOT NULL AND NOT p_offline THEN
        PERFORM ledger.fail('archived', 'this position or its merchant is archived',
                            jsonb_build_object('assignment_id', p_assignment_id));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ledger.log_violation(
    p_actor text, p_event_id bigint, p_tx_id bigint, p_from ledger.tx_state, p_to ledger.tx_state,
    p_reason text, p_payload jsonb DEFAULT '{}')
RETURNS void LANGUAGE sql AS $$
-- Records a refused transition or inconsistent report in the violation log.
-- Returns nothing; the caller returns a rejection instead of raising, so the row survives.
    INSERT INTO ledger.violation (actor, event_id, transaction_id, from_state, to_state, reason, payload)
    VALUES (p_actor, p_event_id, p_tx_id, p_from, p_to, p_reason, coalesce(p_payload, '{}'));
$$;

CREATE OR REPLACE FUNCTION ledger.new_transaction(
    p_event_id bigint, p_type ledger.tx_type, p_state ledger.tx_state,
    p_account_id bigint, p_other_account_id bigint, p_amount bigint,
    p_fee bigint DEFAULT 0, p_held bigint DEFAULT 0, p_tag_id bigint DEFAULT NULL, p_tag_tx_number integer DEFAULT NULL,
    p_assignment_id bigint DEFAULT NULL, p_terminal_tx_number bigint DEFAULT NULL,
    p_payment ledger.payment_method DEFAULT NULL, p_linked_id bigint DEFAULT NULL,
    p_terminal_time timestamptz DEFAULT NULL, p_expires_at timestamptz DEFAULT NULL, p_if_new boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Creates a transaction in its first state (a (new) -> p_state transition of ledger.transition) that holds p_held; the
-- caller adds that to the account's held amount. Returns its id, or NULL when p_if_new and (assignment, terminal
-- number) is taken; raises idempotency-conflict when it is taken otherwise, invalid-transition for a bad first state.
DECLARE
    v_id bigint;
BEGIN
    -- One statement: the transition check is part of the INSERT (a separate query per booking costs an executor run).
    INSERT INTO ledger.transaction (event_id, type, state, account_id, other_account_id, amount, fee, held,
                                    tag_id, tag_tx_number, assignment_id, terminal_tx_number, payment, linked_id,
                                    terminal_time, expires_at, committed_at)
    SELECT p_event_id, p_type, p_state, p_account_id, p_other_account_id, ledger.positive(p_amount, 'amount'),
           p_fee, p_held, p_tag_id, p_tag_tx_number, p_assignment_id, p_terminal_tx_number, p_payment, p_linked_id,
           p_terminal_time, p_expires_at, CASE WHEN p_state = 'Committed' THEN now() END
     WHERE EXISTS (SELECT FROM ledger.transition WHERE from_state IS NULL AND to_state = p_state)
    ON CONFLICT ON CONSTRAINT terminal_identity_unique DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        IF NOT EXISTS (SELECT FROM ledger.transition WHERE from_state IS NULL AND to_state = p_state) THEN
            PERFORM ledger.fail('invalid-transition', format('a new transaction cannot start in %s', p_state));
        ELSIF p_if_new THEN
            RETURN NULL;
        END IF;
        -- Callers hold the customer's lock and saw no such number, so a concurrent session has just claimed
        -- it for another customer: the same terminal transaction with a different payload.
        PERFORM ledger.fail('idempotency-conflict',
            format('terminal transaction %s of assignment %s was just claimed for another tag', p_terminal_tx_number, p_assignment_id),
            (SELECT jsonb_build_object('transaction_id', x.id, 'state', x.state) FROM ledger.transaction x
              WHERE x.assignment_id = p_assignment_id AND x.terminal_tx_number = p_terminal_tx_number));
    END IF;
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION ledger.set_state(t ledger.transaction, p_to ledger.tx_state, p_actor text,
                                            p_payload jsonb DEFAULT '{}', p_allow_overdraft boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
-- The one place an existing transaction changes state: checks ledger.transition, keeps the change in the row's
-- state_changes, releases the hold when it leaves a holding state, and books it (ledger.book) when it becomes
-- Committed. t is the transaction as the caller read it under the lock below. Returns 'changed', 'duplicate' (already in p_to) or 'invalid' (violation logged, nothing
-- changed); booking may raise insufficient-balance unless p_allow_overdraft. Lock order: every caller holds the row
-- lock of the transaction's customer account (ledger.lock_account), taken before any of that customer's
-- transactions is read; that lock serialises all changes to them, so the transaction row itself is not locked again
-- (a second row lock would cost a WAL record per change).
DECLARE
    v_held bigint := t.held;
    v_balance bigint;
    u ledger.transaction;
BEGIN
    IF t.state = p_to THEN
        RETURN 'duplicate';
    END IF;
    -- The transition check is part of the UPDATE (one statement, one executor run).
    UPDATE ledger.transaction
       SET state = p_to,
           held = CASE WHEN ledger.holds(p_to) THEN held ELSE 0 END,
           committed_at = CASE WHEN p_to = 'Committed' THEN now() END,
           updated_at = now(),
           state_changes = state_changes || ROW(t.state, p_to, now(), p_actor)::ledger.state_change
     WHERE id = t.id AND EXISTS (SELECT FROM ledger.transition WHERE from_state = t.state AND to_state = p_to)
    RETURNING * INTO u;
    IF NOT FOUND THEN
        PERFORM ledger.log_violation(p_actor, t.event_id, t.id, t.state, p_to,
                                     format('%s -> %s is not an allowed transition', t.state, p_to), p_payload);
        RETURN 'invalid';
    END IF;
    IF ledger.holds(p_to) THEN
        v_held := 0;                                   -- the hold stays with the transaction
    END IF;
    IF p_to = 'Committed' THEN
        -- One UPDATE of the customer row books the lines and releases the hold together. (Updating the row twice in
        -- one transaction would re-run its foreign-key check and KEY SHARE-lock the event row, a hot row.)
        v_balance := ledger.book(u, p_allow_overdraft, v_held);
    ELSIF v_held > 0 THEN
        UPDATE ledger.account SET held = held - v_held WHERE id = t.account_id;
    END IF;
    RETURN 'changed';
END
$$;

CREATE OR REPLACE FUNCTION ledger.set_state(p_tx_id bigint, p_to ledger.tx_state, p_actor text,
                                            p_payload jsonb DEFAULT '{}', p_allow_overdraft boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
-- ledger.set_state of the transaction p_tx_id, read here (the caller holds its customer's lock).
-- Returns what that returns; raises not-found when there is no such transaction.
DECLARE
    t ledger.transaction;
BEGIN
    SELECT * INTO t FROM ledger.transaction WHERE id = p_tx_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('transaction %s does not exist', p_tx_id));
    END IF;
    RETURN ledger.set_state(t, p_to, p_actor, p_payload, p_allow_overdraft);
END
$$;

CREATE OR REPLACE FUNCTION ledger.lines_for(t ledger.transaction)
RETURNS ledger.line[] LANGUAGE plpgsql STABLE AS $$
-- Derives the booking lines of a transaction from its type, accounts, amount, fee and items (SPEC 3).
-- Returns the lines as (debit receives, credit pays, amount); lines of 0 are left out.
DECLARE
    v_lines ledger.line[];
    v_fee_account bigint;
    v_returnable boolean;
    v_deposit_account bigint;
BEGIN
    IF t.fee > 0 THEN
        v_fee_account := ledger.system_account(t.event_id, 'fee', 'fees');
    END IF;
    CASE t.type
    WHEN 'purchase' THEN
        -- Returnable items (deposit, Pfand) go to the event's deposit account, the rest to the merchant. The deposit
        -- account is looked up only when there is one (NULL marks its lines meanwhile): most sales have none.
        SELECT array_agg(ROW(CASE WHEN NOT i.returnable THEN t.other_account_id END,
                             t.account_id, i.quantity * i.unit_price)::ledger.line ORDER BY i.line_no),
               bool_or(i.returnable)
          INTO v_lines, v_returnable
          FROM ledger.item i
         WHERE i.transaction_id = t.id AND i.quantity * i.unit_price > 0;
        IF v_returnable THEN
            v_deposit_account := ledger.system_account(t.event_id, 'deposit', 'deposit');
            SELECT array_agg(ROW(coalesce(l.debit, v_deposit_account), l.credit, l.amount)::ledger.line ORDER BY l.n)
              INTO v_lines
              FROM unnest(v_lines) WITH ORDINALITY AS l(debit, credit, amount, n);
        END IF;
        v_lines := coalesce(v_lines, ARRAY[ROW(t.other_account_id, t.account_id, t.amount)::ledger.line]);
    WHEN 'topup' THEN
        v_lines := ARRAY[ROW(t.account_id, t.other_account_id, t.amount)::ledger.line];
        IF t.fee > 0 THEN
            v_lines := v_lines || ROW(v_fee_account, t.account_id, t.fee)::ledger.line;
        END IF;
    WHEN 'payout' THEN
        v_lines := ARRAY[ROW(t.other_account_id, t.account_id, t.amount - t.fee)::ledger.line];
        IF t.fee > 0 THEN
            v_lines := v_lines || ROW(v_fee_account, t.account_id, t.fee)::ledger.line;
        END IF;
    WHEN 'refund', 'transfer', 'donation' THEN
        v_lines := ARRAY[ROW(t.other_account_id, t.account_id, t.amount)::ledger.line];
    WHEN 'chargeback', 'deposit_return' THEN
        v_lines := ARRAY[ROW(t.account_id, t.other_account_id, t.amount)::ledger.line];
    END CASE;
    RETURN v_lines;
END
$$;

CREATE OR REPLACE FUNCTION ledger.apply_to_customer(p_tx_id bigint, p_account_id bigint, p_delta bigint,
                                                    p_allow_overdraft boolean, p_release bigint DEFAULT 0)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Moves the running balance of one customer account by p_delta (its side of a transaction's lines) and releases
-- p_release of its held amount, in one UPDATE; money arriving makes a new tag active. Raises insufficient-balance when a debit would take it below what is available, unless p_allow_overdraft:
-- then it is booked anyway (the tag was already charged) and a negative balance is flagged in ledger.overdraft.
-- Returns the balance after.
DECLARE
    v_balance bigint;
    v_held bigint;
BEGIN
    UPDATE ledger.account SET balance = balance + p_delta, held = held - p_release WHERE id = p_account_id
    RETURNING balance, held INTO v_balance, v_held;
    IF p_delta >= 0 THEN
        -- Money arriving on a tag that was never topped up makes it active (cash, card, online, transfer).
        UPDATE ledger.tag SET status = 'active' WHERE account_id = p_account_id AND status = 'new';
        RETURN v_balance;
    END IF;
    IF p_allow_overdraft THEN
        IF v_balance < 0 THEN
            INSERT INTO ledger.overdraft (transaction_id, account_id, balance_after)
            VALUES (p_tx_id, p_account_id, v_balance) ON CONFLICT DO NOTHING;
        END IF;
    ELSIF v_balance - v_held < 0 THEN
        PERFORM ledger.fail('insufficient-balance',
                            format('available %s is short by %s', v_balance - v_held - p_delta, v_held - v_balance),
                            jsonb_build_object('available', v_balance - v_held - p_delta));
    END IF;
    RETURN v_balance;
END
$$;

CREATE OR REPLACE FUNCTION ledger.book(t ledger.transaction, p_allow_overdraft boolean, p_release bigint DEFAULT 0)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Books the lines of a committed transaction and moves the running balance of the customer account(s) it touches
-- (account_id, and other_account_id for a transfer), releasing p_release of account_id's hold in the same UPDATE;
-- see ledger.apply_to_customer for the overdraft rule.
-- System accounts are hot: their rows are never touched here, their balance is derived from the lines. A receipt
-- (every type but transfer and donation: ledger.is_receipt) is enqueued for fiscal signing in the same database
-- transaction.
-- Returns the balance of account_id after the booking. (Helpers that return a value are called as expressions, not
-- PERFORMed: a PERFORM is a query of its own, with an executor start and end.)
DECLARE
    v_lines ledger.line[] := ledger.lines_for(t);
    v_own bigint := 0;
    v_other bigint := 0;
    l ledger.line;
    v_balance bigint;
    v_other_balance bigint;
    v_outbox_id bigint;
BEGIN
    INSERT INTO ledger.booking (transaction_id, line_no, debit_account_id, credit_account_id, amount)
    SELECT t.id, x.ord, x.debit, x.credit, x.amount
      FROM unnest(v_lines) WITH ORDINALITY AS x(debit, credit, amount, ord);
    FOREACH l IN ARRAY v_lines LOOP
        v_own := v_own + CASE WHEN l.debit = t.account_id THEN l.amount WHEN l.credit = t.account_id THEN -l.amount ELSE 0 END;
        v_other := v_other + CASE WHEN l.debit = t.other_account_id THEN l.amount
                                  WHEN l.credit = t.other_account_id THEN -l.amount ELSE 0 END;
    END LOOP;
    v_balance := ledger.apply_to_customer(t.id, t.account_id, v_own, p_allow_overdraft, p_release);
    IF t.type = 'transfer' THEN                           -- both sides are customers
        v_other_balance := ledger.apply_to_customer(t.id, t.other_account_id, v_other, p_allow_overdraft);
    ELSIF ledger.is_receipt(t.type) THEN
        -- Every committed transaction is booked exactly once, here: a receipt is to be signed.
        v_outbox_id := ledger.enqueue('tse', ledger.tse_client_id(t.assignment_id), t.id);
    END IF;
    RETURN v_balance;
END
$$;

CREATE OR REPLACE FUNCTION ledger.add_items(p_tx_id bigint, p_event_id bigint, p_items jsonb, p_amount bigint,
                                            p_returnable_only boolean DEFAULT false, p_offline boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql AS $$
-- Stores the items of a transaction with each product's name, price and VAT rate as sold now. An archived product is
-- refused unless the sale was already made offline (p_offline) or its deposit comes back (p_returnable_only).
-- Returns how many; raises validation, unknown-product, archived, price-mismatch, or amount-mismatch when p_amount is
-- not their sum.
DECLARE
    v_item jsonb;
    v_no integer := 0;
    v_product ledger.product;
    v_quantity bigint;
    v_price bigint;
    v_total bigint := 0;
BEGIN
    IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' OR jsonb_array_length(p_items) = 0
       OR jsonb_array_length(p_items) > 100 THEN
        PERFORM ledger.fail('validation', 'items must be a list of 1 to 100 items', '{"field": "items"}');
    END IF;
    -- Walked by index, not FOR ... IN SELECT jsonb_array_elements(): a query loop opens a cursor per call.
    FOR i IN 0 .. jsonb_array_length(p_items) - 1 LOOP
        v_item := p_items -> i;
        v_no := v_no + 1;
        IF jsonb_typeof(v_item) <> 'object' THEN
            PERFORM ledger.fail('validation', format('item %s is not an object', v_no), '{"field": "items"}');
        END IF;
        SELECT * INTO v_product FROM ledger.product
         WHERE id = ledger.json_int(v_item, 'product_id') AND event_id = p_event_id;
        IF NOT FOUND THEN
            PERFORM ledger.fail('unknown-product', format('product %s does not belong to this event', v_item -> 'product_id'),
                                jsonb_build_object('product_id', v_item -> 'product_id'));
        END IF;
        IF v_product.archived AND NOT (p_offline OR p_returnable_only) THEN
            PERFORM ledger.fail('archived', format('%s is archived', v_product.name),
                                jsonb_build_object('product_id', v_product.id));
        END IF;
        IF p_returnable_only AND NOT v_product.returnable THEN
            PERFORM ledger.fail('validation', format('product %s is not returnable', v_product.id), '{"field": "items"}');
        END IF;
        v_quantity := ledger.json_int(v_item, 'quantity', p_positive => true);
        v_price := coalesce(ledger.json_int(v_item, 'unit_price', false), v_product.price);
        IF v_price IS NULL OR v_price < 0 THEN
            PERFORM ledger.fail('validation', format('product %s needs a unit_price of 0 or more', v_product.id), '{"field": "unit_price"}');
        END IF;
        IF v_product.fixed_price AND v_price <> v_product.price THEN
            PERFORM ledger.fail('price-mismatch', format('%s costs %s, not %s', v_product.name, v_product.price, v_price),
                                jsonb_build_object('product_id', v_product.id, 'price', v_product.price));
        END IF;
        INSERT INTO ledger.item (transaction_id, line_no, product_id, name, quantity, unit_price, vat_rate, returnable)
        VALUES (p_tx_id, v_no, v_product.id, v_product.name, v_quantity, v_price, v_product.vat_rate, v_product.returnable);
        v_total := v_total + v_quantity * v_price;
    END LOOP;
    IF v_total <> p_amount THEN
        PERFORM ledger.fail('amount-mismatch', format('the items add up to %s, not %s', v_total, p_amount),
                            jsonb_build_object('items_total', v_total, 'amount', p_amount));
    END IF;
    RETURN v_no;
END
$$;

CREATE OR REPLACE FUNCTION ledger.problem_of(p_sqlstate text)
RETURNS text LANGUAGE sql STABLE AS $$
-- Names the problem behind a caught error.
-- Returns its slug, or NULL when the error is not one of ledger.problem (the caller re-raises it).
    SELECT slug FROM ledger.problem WHERE sqlstate = p_sqlstate;
$$;
