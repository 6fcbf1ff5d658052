SET LOCAL ROLE festpay_owner;

-- What terminals do: tag sync, reserve, replication, top-up, refund, deposit return, open-loop purchase.
-- Every function takes the assignment id the gateway authenticated; (assignment, terminal number) makes repeats safe.

CREATE OR REPLACE FUNCTION ledger.request_differs(t ledger.transaction, p_type ledger.tx_type, p_account_id bigint,
                                                  p_amount bigint, p_payment text DEFAULT NULL,
                                                  p_tag_tx_number bigint DEFAULT NULL, p_items jsonb DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
-- Compares a repeat of a terminal transaction number with its transaction: type, customer account, amount, and what
-- the repeat gives of payment, tag number (when the transaction has one) and items (product, quantity, unit price when
-- given, in order; a Reserve made from tag data has none yet and takes its replication's). Returns true when any differ.
DECLARE
    v_items jsonb := CASE WHEN jsonb_typeof(p_items) = 'array' THEN p_items ELSE '[]' END;
    v_differs boolean := false;
BEGIN
    IF t.type <> p_type OR t.account_id IS DISTINCT FROM p_account_id OR t.amount IS DISTINCT FROM p_amount
       OR (p_payment IS NOT NULL AND t.payment::text IS DISTINCT FROM p_payment)
       OR (p_tag_tx_number IS NOT NULL AND t.tag_tx_number <> p_tag_tx_number) THEN
        RETURN true;
    END IF;
    IF p_items IS NOT NULL THEN
        -- One statement: the stored items joined to the request's by position.
        SELECT count(*) > 0 AND (count(*) <> jsonb_array_length(v_items) OR NOT bool_and(coalesce(
                   r.j -> 'product_id' = to_jsonb(i.product_id)
                   AND r.j -> 'quantity' = to_jsonb(i.quantity::integer)
                   AND (coalesce(r.j -> 'unit_price', 'null') = 'null' OR r.j -> 'unit_price' = to_jsonb(i.unit_price::bigint)),
                   false)))
          INTO v_differs
          FROM ledger.item i
          LEFT JOIN jsonb_array_elements(v_items) WITH ORDINALITY AS r(j, n) ON r.n = i.line_no::integer
         WHERE i.transaction_id = t.id;
    END IF;
    RETURN v_differs;
END
$$;

CREATE OR REPLACE FUNCTION ledger.same_request(t ledger.transaction, p_type ledger.tx_type, p_account_id bigint,
                                               p_amount bigint, p_payment text DEFAULT NULL,
                                               p_tag_tx_number bigint DEFAULT NULL, p_items jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Checks that a repeated terminal transaction number carries the same request as the first time (ledger.request_differs).
-- Returns the transaction's id; raises idempotency-conflict when anything differs.
BEGIN
    IF ledger.request_differs(t, p_type, p_account_id, p_amount, p_payment, p_tag_tx_number, p_items) THEN
        PERFORM ledger.fail('idempotency-conflict',
            format('terminal transaction %s was first sent with other content (%s of %s)', t.terminal_tx_number, t.type, t.amount),
            jsonb_build_object('transaction_id', t.id, 'state', t.state));
    END IF;
    RETURN t.id;
END
$$;

CREATE OR REPLACE FUNCTION ledger.log_entry_mac(p_secret bytea, p_assignment_id bigint, p_terminal_tx_number bigint,
                                               p_uid text, p_tag_tx_number bigint, p_amount bigint)
RETURNS text LANGUAGE sql STABLE AS $$
-- The MAC a terminal writes with each charge in a tag's log (SPEC 7): base64 of HMAC-SHA256, keyed with its assignment's
-- secret, over assignment, terminal number, UID (normalised upper-case hex), tag number and amount, one a line.
-- Returns it (44 characters), or NULL when any part is NULL.
    SELECT encode(extensions.hmac(convert_to(p_assignment_id || E'\n' || p_terminal_tx_number || E'\n' || p_uid
                                             || E'\n' || p_tag_tx_number || E'\n' || p_amount, 'UTF8'),
                                  p_secret, 'sha256'), 'base64');
$$;

CREATE OR REPLACE FUNCTION ledger.log_entry_mac_valid(p_secret bytea, p_assignment_id bigint, p_terminal_tx_number bigint,
                                                     p_uid text, p_tag_tx_number bigint, p_amount bigint, p_mac text)
RETURNS boolean LANGUAGE sql STABLE AS $$
-- Checks a tag log entry's MAC against ledger.log_entry_mac. Compares the SHA-256 digests of both, so the time it takes
-- tells nothing about how much of a guess was right. Returns true when it verifies, false when it differs or is missing.
    SELECT coalesce(extensions.digest(ledger.log_entry_mac(p_secret, p_assignment_id, p_terminal_tx_number, p_uid,
                                                           p_tag_tx_number, p_amount), 'sha256')
                    = extensions.digest(p_mac, 'sha256'), false);
$$;

CREATE OR REPLACE FUNCTION ledger.terminal_tx(p_assignment_id bigint, p_terminal_tx_number bigint)
RETURNS ledger.transaction LANGUAGE plpgsql AS $$
-- Finds the transaction a terminal knows by its number. Callers hold the lock of the customer account first,
-- which serialises every change to that customer's transactions (see ledger.set_state).
-- Returns the row, or NULL when the backend has not seen it.
DECLARE
    t ledger.transaction;
BEGIN
    SELECT * INTO t FROM ledger.transaction
     WHERE assignment_id = p_assignment_id AND terminal_tx_number = p_terminal_tx_number;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION api.reserve(p_assignment_id bigint, p_terminal_tx_number bigint, p_uid text,
                                       p_tag_tx_number integer, p_amount bigint, p_items jsonb,
                                       OUT transaction_id bigint, OUT state text, OUT available bigint,
                                       OUT expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Reserves a purchase at terminal checkout (-> ReservePending): the tag must be active and available >= amount.
-- Returns the transaction, its state, what is available after it and when it expires; a repeat returns the same
-- transaction. Raises insufficient-balance (detail: available), tag-blocked, tag-not-active, validation, ...
DECLARE
    ctx record := ledger.terminal_context(p_assignment_id, 'sale');
    v_uid text := ledger.normalize_uid(p_uid);
    c record;
    t ledger.transaction;
    v_items integer;
BEGIN
    p_terminal_tx_number := ledger.positive(p_terminal_tx_number, 'terminal_tx_number');
    p_amount := ledger.positive(p_amount, 'amount');
    -- Hold the amount first: this locks the customer's account (lock order: the account before its transactions)
    -- and reads what was available, in one statement. Every refusal below raises, which undoes it.
    UPDATE ledger.account a SET held = a.held + p_amount
      FROM ledger.tag g
     WHERE g.event_id = ctx.event_id AND g.uid = v_uid AND a.id = g.account_id
    RETURNING g.id AS tag_id, g.status, a.id AS account_id, a.balance - a.held + p_amount AS available INTO c;
    IF NOT FOUND THEN
        PERFORM ledger.find_tag(ctx.event_id, v_uid);            -- raises not-found
    END IF;
    -- Only a reserve that passes its checks is inserted: a refusal takes no transaction id (receipt numbers).
    IF c.status = 'active' AND c.available >= p_amount THEN
        transaction_id := ledger.new_transaction(
            ctx.event_id, 'purchase', 'ReservePending', c.account_id, ctx.merchant_account_id, p_amount,
            p_held => p_amount, p_tag_id => c.tag_id, p_tag_tx_number => ledger.tag_number(p_tag_tx_number),
            p_assignment_id => p_assignment_id, p_terminal_tx_number => p_terminal_tx_number,
            p_expires_at => now() + ctx.reserve_timeout, p_if_new => true);
    END IF;
    IF transaction_id IS NULL THEN
        -- A repeat answers with the transaction as first reserved (whatever changed since) and gives the hold back;
        -- anything else was refused.
        t := ledger.terminal_tx(p_assignment_id, p_terminal_tx_number);
        IF t.id IS NULL AND c.status = 'blocked' THEN
            PERFORM ledger.fail('tag-blocked', format('tag %s is blocked', v_uid), jsonb_build_object('uid', v_uid));
        ELSIF t.id IS NULL AND c.status = 'new' THEN
            PERFORM ledger.fail('tag-not-active', format('tag %s has never been topped up', v_uid), jsonb_build_object('uid', v_uid));
        ELSIF t.id IS NULL THEN
            PERFORM ledger.fail('insufficient-balance', format('available %s, needed %s', c.available, p_amount),
                                jsonb_build_object('available', c.available));
        END IF;
        UPDATE ledger.account SET held = held - p_amount WHERE id = c.account_id;
        transaction_id := ledger.same_request(t, 'purchase', c.account_id, p_amount, NULL, p_tag_tx_number, p_items);
        state := t.state; expires_at := t.expires_at; available := c.available;
        RETURN;
    END IF;
    v_items := ledger.add_items(transaction_id, ctx.event_id, p_items, p_amount);
    state := 'ReservePending';
    available := c.available - p_amount;
    expires_at := now() + ctx.reserve_timeout;
END
$$;
COMMENT ON FUNCTION api.reserve IS
    'Reserves a purchase at checkout (ReservePending). Returns transaction_id, state, available, expires_at; repeats return the same transaction.';

CREATE OR REPLACE FUNCTION ledger.replicate_one(p_assignment_id bigint, p_event_id bigint, p_entry jsonb,
                                                OUT terminal_tx_number bigint, OUT transaction_id bigint,
                                                OUT state text, OUT outcome text, OUT problem text)
LANGUAGE plpgsql AS $$
-- Applies one replicated terminal transaction (Committed, Aborted or TerminalConfirmUnknown) per SPEC 5; a sale the
-- terminal made offline is taken even when its position or products were archived since (the tag was charged).
-- Returns its outcome: booked, duplicate, or rejected (violation logged) with problem invalid-transition,
-- idempotency-conflict (it differs from what the backend holds under its number) or implausible-offline-charge (an
-- unseen Committed sale above the offline limit or of an unknown tag); raises the named problem for bad input.
DECLARE
    v_actor text := 'assignment:' || p_assignment_id;
    v_number bigint := ledger.json_int(p_entry, 'terminal_tx_number', p_positive => true);
    v_state text := p_entry ->> 'state';
    v_type text := coalesce(p_entry ->> 'type', 'purchase');
    v_amount bigint := ledger.json_int(p_entry, 'amount', p_positive => true);
    v_tag_no integer := ledger.tag_number(ledger.json_int(p_entry, 'tag_tx_number', false));
    v_tag ledger.tag;
    c record;
    t ledger.transaction;
    v_target ledger.tx_state;
    v_result text;
    v_time timestamptz;
    v_limit bigint;
BEGIN
    terminal_tx_number := v_number;
    IF v_state IS NULL OR v_state NOT IN ('Committed', 'Aborted', 'TerminalConfirmUnknown') THEN
        PERFORM ledger.fail('validation', 'state must be Committed, Aborted or TerminalConfirmUnknown', '{"field": "state"}');
    END IF;
    IF v_type NOT IN ('purchase', 'topup', 'refund', 'deposit_return') THEN
        PERFORM ledger.fail('validation', 'type must be purchase, topup, refund or deposit_return', '{"field": "type"}');
    END IF;
    v_time := ledger.json_time(p_entry, 'time');
    -- A Committed entry never creates its tag: top-ups need the backend online, so a tag it has not seen holds no money.
    c := ledger.lock_tag(p_event_id, p_entry ->> 'uid', v_state <> 'Committed');
    v_tag := c.tag;
    t := ledger.terminal_tx(p_assignment_id, v_number);

    IF t.id IS NULL THEN
        -- Only purchases can happen offline; every other type was booked online and answered then.
        IF v_type <> 'purchase' THEN
            PERFORM ledger.fail('not-found', format('%s %s was never booked online', v_type, v_number));
        END IF;
        IF v_state = 'Committed' THEN
            SELECT e.offline_limit INTO v_limit FROM ledger.event e WHERE e.id = p_event_id;
            IF v_tag.id IS NULL OR v_tag.status = 'new' OR v_amount > v_limit THEN
                PERFORM ledger.log_violation(v_actor, p_event_id, NULL, NULL, 'Committed',
                    'implausible-offline-charge: ' || CASE WHEN v_tag.id IS NULL OR v_tag.status = 'new'
                                                          THEN 'an offline sale of a tag that never received money (unknown to the backend, or new)'
                                                          ELSE format('an offline sale of %s, above the offline limit of %s', v_amount, v_limit) END,
                    p_entry);
                outcome := 'rejected'; problem := 'implausible-offline-charge';
                RETURN;
            END IF;
        END IF;
        transaction_id := ledger.new_transaction(
            p_event_id, 'purchase', v_state::ledger.tx_state, v_tag.account_id,
            (ledger.terminal_context(p_assignment_id, 'sale', p_offline => true)).merchant_account_id, v_amount,
            p_tag_id => v_tag.id, p_tag_tx_number => v_tag_no,
            p_assignment_id => p_assignment_id, p_terminal_tx_number => v_number, p_terminal_time => v_time);
        PERFORM ledger.add_items(transaction_id, p_event_id, p_entry -> 'items', v_amount, p_offline => true);
        IF v_state = 'Committed' THEN
            -- The tag was charged offline: book it even if it overdraws (flagged for review).
            PERFORM ledger.book(x, true) FROM ledger.transaction x WHERE x.id = transaction_id;
        END IF;
        state := v_state; outcome := 'booked';
        RETURN;
    END IF;

    transaction_id := t.id;
    IF ledger.request_differs(t, v_type::ledger.tx_type, v_tag.account_id, v_amount, p_entry ->> 'payment', v_tag_no,
                              nullif(p_entry -> 'items', 'null')) THEN
        -- Never booked with the content the backend holds: the terminal's record and the backend's disagree.
        PERFORM ledger.log_violation(v_actor, p_event_id, t.id, t.state, v_state::ledger.tx_state,
            format('idempotency-conflict: terminal transaction %s differs from the %s of %s the backend holds',
                   v_number, t.type, t.amount), p_entry);
        state := t.state; outcome := 'rejected'; problem := 'idempotency-conflict';
        RETURN;
    END IF;
    v_target := v_state::ledger.tx_state;
    IF v_target = 'TerminalConfirmUnknown' AND t.state = 'Reserve' THEN
        v_target := 'Committed';          -- uploaded tag data already proved the charge
    ELSIF v_target = 'TerminalConfirmUnknown' AND t.state IN ('Committed', 'Aborted') THEN
        v_target := t.state;              -- the backend already knows the outcome; tell the terminal
    END IF;
    IF t.state = v_target THEN
        state := t.state; outcome := 'duplicate';
        RETURN;
    END IF;
    IF v_target = 'Committed' AND p_entry ? 'items' AND t.type = 'purchase' AND t.state <> 'ReservePending' THEN
        -- A Reserve made from tag data has no items yet: the replication brings them. (An online reserve has them.)
        IF NOT EXISTS (SELECT FROM ledger.item i WHERE i.transaction_id = t.id) THEN
            PERFORM ledger.add_items(t.id, p_event_id, p_entry -> 'items', v_amount, p_offline => true);
        END IF;
    END IF;
    v_result := ledger.set_state(t, v_target, v_actor, p_entry, true);
    IF v_result = 'invalid' THEN
        state := t.state; outcome := 'rejected'; problem := 'invalid-transition';
    ELSE
        state := v_target; outcome := 'booked';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION api.replicate(p_assignment_id bigint, p_transactions jsonb)
RETURNS TABLE (terminal_tx_number bigint, transaction_id bigint, state text, outcome text, problem text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Takes a batch of replicated terminal transactions; each entry is judged alone (its own subtransaction), in the
-- order of their tags' UIDs, so that batches of several tills lock tags in one order and never deadlock.
-- Returns one row per entry, in the batch's order: outcome booked, duplicate or rejected with the problem's slug.
-- Raises for a bad batch.
DECLARE
    v_event_id bigint := ledger.assignment_event(p_assignment_id);
    v_entry jsonb;
    v_order integer[];
    i integer;
    v_results jsonb[];
    r record;
    v_problem text;
BEGIN
    IF p_transactions IS NULL OR jsonb_typeof(p_transactions) <> 'array' OR jsonb_array_length(p_transactions) > 500 THEN
        PERFORM ledger.fail('validation', 'transactions must be a list of at most 500 entries', '{"field": "transactions"}');
    END IF;
    SELECT coalesce(array_agg(g.n ORDER BY upper(p_transactions -> g.n ->> 'uid'), g.n), '{}')
      INTO v_order FROM generate_series(0, jsonb_array_length(p_transactions) - 1) g(n);
    v_results := array_fill(NULL::jsonb, ARRAY[jsonb_array_length(p_transactions)]);
    FOREACH i IN ARRAY v_order LOOP             -- by index: a query loop opens a cursor
        v_entry := p_transactions -> i;
        BEGIN
            IF jsonb_typeof(v_entry) <> 'object' THEN
                PERFORM ledger.fail('validation', 'each transaction must be an object', '{"field": "transactions"}');
            END IF;
            r := ledger.replicate_one(p_assignment_id, v_event_id, v_entry);
            v_results[i + 1] := jsonb_build_object('n', r.terminal_tx_number, 'id', r.transaction_id, 'state', r.state,
                                                   'outcome', r.outcome, 'problem', r.problem);
        EXCEPTION WHEN OTHERS THEN
            v_problem := ledger.problem_of(SQLSTATE);
            IF v_problem IS NULL AND left(SQLSTATE, 2) IN ('22', '23') THEN
                v_problem := 'validation';            -- bad data in this entry (out of range, constraint)
            ELSIF v_problem IS NULL THEN
                RAISE;
            END IF;
            terminal_tx_number := CASE WHEN jsonb_typeof(v_entry -> 'terminal_tx_number') = 'number'
                                       THEN trunc((v_entry ->> 'terminal_tx_number')::numeric)::bigint END;
            SELECT t.id, t.state::text INTO transaction_id, state FROM ledger.transaction t
             WHERE t.assignment_id = p_assignment_id AND t.terminal_tx_number = replicate.terminal_tx_number;
            v_results[i + 1] := jsonb_build_object('n', terminal_tx_number, 'id', transaction_id, 'state', state,
                                                   'outcome', 'rejected', 'problem', v_problem);
        END;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(v_results, 1), 0) LOOP
        terminal_tx_number := (v_results[i] ->> 'n')::bigint; transaction_id := (v_results[i] ->> 'id')::bigint;
        state := v_results[i] ->> 'state'; outcome := v_results[i] ->> 'outcome'; problem := v_results[i] ->> 'problem';
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION api.replicate IS
    'Replicates a batch of terminal transactions (Committed, Aborted, TerminalConfirmUnknown), each judged alone. '
    'Returns per entry: terminal_tx_number, transaction_id, state, outcome (booked, duplicate, rejected), problem.';

CREATE OR REPLACE FUNCTION api.tag_sync(p_assignment_id bigint, p_uid text, p_tag_tx_number integer,
                                        p_balance bigint, p_log jsonb)
RETURNS TABLE (uid text, status text, balance bigint, held bigint, available bigint, acknowledged jsonb,
               refused jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- First tap: books the tag's trusted unacknowledged charges (unseen -> Reserve, ReservePending -> Reserve,
-- TerminalConfirmUnknown/ReserveExpired -> Committed), refuses untrusted ones (SPEC 7: violation logged, nothing held)
-- and aborts this tag's TerminalConfirmUnknown transactions that the complete log shows were never written.
-- Returns the online info, the entries to mark acknowledged and the refused ones with their problem; raises
-- validation for a malformed log.
DECLARE
    ctx record := ledger.terminal_context(p_assignment_id);
    v_actor text := 'assignment:' || p_assignment_id;
    v_uid text := ledger.normalize_uid(p_uid);
    v_tag ledger.tag;
    v_account ledger.account;
    v_limit bigint;
    v_offline bigint := 0;
    v_entry jsonb;
    v_entry_assignment bigint;
    v_entry_number bigint;
    v_entry_tag_no integer;
    v_entry_amount bigint;
    v_entry_event bigint;
    v_merchant bigint;
    v_secret bytea;
    v_problem text;
    v_reason text;
    t ledger.transaction;
    v_seen bigint[] := '{}';
    v_ack jsonb := '[]';
    v_refused jsonb := '[]';
    v_new_id bigint;
    v_unknown bigint;
BEGIN
    IF p_tag_tx_number IS NULL OR p_tag_tx_number < 0 THEN
        PERFORM ledger.fail('validation', 'tag_tx_number must be 0 or more', '{"field": "tag_tx_number"}');
    END IF;
    IF p_log IS NULL THEN
        p_log := '[]';
    END IF;
    IF jsonb_typeof(p_log) <> 'array' OR jsonb_array_length(p_log) > 255 THEN
        PERFORM ledger.fail('validation', 'log must be a list of at most 255 entries', '{"field": "log"}');
    END IF;
    SELECT * INTO v_tag FROM ledger.tag tg WHERE tg.event_id = ctx.event_id AND tg.uid = v_uid;
    IF NOT FOUND AND jsonb_array_length(p_log) = 0 THEN
        -- A tag the backend has never seen and that carries no charges: nothing to store.
        uid := v_uid; status := 'new';
        balance := 0; held := 0; available := 0; acknowledged := '[]'; refused := '[]';
        RETURN NEXT;
        RETURN;
    END IF;
    IF jsonb_array_length(p_log) = 0 AND NOT EXISTS (
           SELECT FROM ledger.transaction x
            WHERE x.tag_id = v_tag.id AND x.state = 'TerminalConfirmUnknown' AND x.tag_tx_number <= p_tag_tx_number) THEN
        -- Nothing to book and nothing to settle (the first tap of most purchases): answer without a lock, so this
        -- stays a read-only transaction that writes no WAL.
        SELECT a.balance, a.held INTO balance, held FROM ledger.account a WHERE a.id = v_tag.account_id;
        uid := v_tag.uid; status := v_tag.status::text; available := balance - held; acknowledged := '[]'; refused := '[]';
        RETURN NEXT;
        RETURN;
    END IF;
    -- A tag the backend does not know is not created here: it never received money, so it holds no charge.
    IF v_tag.id IS NOT NULL THEN
        v_account := ledger.lock_account(v_tag.account_id);
        SELECT * INTO v_tag FROM ledger.tag tg WHERE tg.id = v_tag.id;        -- as it is under the lock
    END IF;
    SELECT e.offline_limit INTO v_limit FROM ledger.event e WHERE e.id = ctx.event_id;

    FOR v_entry IN SELECT jsonb_array_elements(p_log) LOOP
        IF jsonb_typeof(v_entry) <> 'object' THEN
            PERFORM ledger.fail('validation', 'each log entry must be an object', '{"field": "log"}');
        END IF;
        v_entry_assignment := ledger.json_int(v_entry, 'assignment_id');
        v_entry_number := ledger.json_int(v_entry, 'terminal_tx_number', p_positive => true);
        v_entry_tag_no := ledger.tag_number(ledger.json_int(v_entry, 'tag_tx_number'));
        v_entry_amount := ledger.json_int(v_entry, 'amount', p_positive => true);
        v_problem := NULL;
        t := NULL;
        -- Trusted only when written by a sale terminal of this event with its own secret, below the tag's next
        -- number, and, for charges the backend has not seen, within the offline limit together (SPEC 7).
        SELECT a.event_id, m.account_id, a.secret INTO v_entry_event, v_merchant, v_secret
          FROM ledger.assignment a JOIN ledger.position p ON p.id = a.position_id
          LEFT JOIN ledger.merchant m ON m.id = p.merchant_id
         WHERE a.id = v_entry_assignment;
        IF NOT FOUND OR v_entry_event <> ctx.event_id OR v_merchant IS NULL THEN
            v_problem := 'log-entry-foreign';
            v_reason := format('assignment %s is not a sale terminal of this event', v_entry_assignment);
        ELSIF NOT ledger.log_entry_mac_valid(v_secret, v_entry_assignment, v_entry_number, v_uid, v_entry_tag_no,
                                             v_entry_amount, v_entry ->> 'mac') THEN
            v_problem := 'log-entry-forged';
            v_reason := format('the MAC is missing or not that of assignment %s', v_entry_assignment);
        ELSIF v_entry_tag_no >= p_tag_tx_number THEN
            v_problem := 'log-entry-number-too-high';
            v_reason := format('tag number %s is not below the tag''s next number %s', v_entry_tag_no, p_tag_tx_number);
        ELSE
            t := ledger.terminal_tx(v_entry_assignment, v_entry_number);
            IF t.id IS NULL AND (v_tag.id IS NULL OR v_tag.status = 'new') THEN
                v_problem := 'implausible-offline-charge';
                v_reason := 'an offline charge on a tag that never received money (unknown to the backend, or new)';
            ELSIF t.id IS NULL AND v_offline + v_entry_amount > v_limit THEN
                v_problem := 'offline-limit-exceeded';
                v_reason := format('%s more offline would make %s, above the offline limit of %s',
                                   v_entry_amount, v_offline + v_entry_amount, v_limit);
            ELSIF t.id IS NULL THEN
                BEGIN
                    v_new_id := ledger.new_transaction(
                        ctx.event_id, 'purchase', 'Reserve', v_tag.account_id, v_merchant, v_entry_amount,
                        p_held => v_entry_amount, p_tag_id => v_tag.id, p_tag_tx_number => v_entry_tag_no,
                        p_assignment_id => v_entry_assignment, p_terminal_tx_number => v_entry_number,
                        p_terminal_time => ledger.json_time(v_entry, 'time'));
                    UPDATE ledger.account a SET held = a.held + v_entry_amount WHERE a.id = v_tag.account_id;
                    v_offline := v_offline + v_entry_amount;
                    v_seen := v_seen || v_new_id;
                EXCEPTION WHEN SQLSTATE 'FP031' THEN
                    -- Claimed for another tag at this very moment: judge the entry against that transaction.
                    t := ledger.terminal_tx(v_entry_assignment, v_entry_number);
                END;
            END IF;
            IF t.id IS NOT NULL AND ledger.request_differs(t, 'purchase', v_tag.account_id, v_entry_amount, NULL,
                                                            v_entry_tag_no) THEN
                v_problem := 'idempotency-conflict';
                v_reason := format('terminal transaction %s of assignment %s is another charge (a %s of %s)',
                                   v_entry_number, v_entry_assignment, t.type, t.amount);
            END IF;
        END IF;
        IF v_problem IS NOT NULL THEN
            -- Nothing is held or booked; the terminal drops the entry from the tag all the same.
            PERFORM ledger.log_violation(v_actor, ctx.event_id, t.id, t.state,
                                         CASE WHEN t.id IS NULL THEN 'Reserve' END::ledger.tx_state,
                                         v_problem || ': ' || v_reason, v_entry);
            v_refused := v_refused || jsonb_build_object('assignment_id', v_entry_assignment,
                                                         'terminal_tx_number', v_entry_number, 'problem', v_problem);
            CONTINUE;
        END IF;
        IF t.id IS NOT NULL THEN
            v_seen := v_seen || t.id;
            CASE t.state
            WHEN 'ReservePending' THEN
                PERFORM ledger.set_state(t.id, 'Reserve', v_actor, v_entry);
            WHEN 'TerminalConfirmUnknown', 'ReserveExpired' THEN
                PERFORM ledger.set_state(t.id, 'Committed', v_actor, v_entry, true);
            WHEN 'Reserve', 'Committed' THEN
                NULL;                                  -- known already
            ELSE
                PERFORM ledger.set_state(t.id, 'Reserve', v_actor, v_entry);   -- refused and logged (e.g. Aborted)
            END CASE;
        END IF;
        v_ack := v_ack || jsonb_build_object('assignment_id', v_entry_assignment, 'terminal_tx_number', v_entry_number);
    END LOOP;

    -- The log is complete evidence: an unknown outcome whose tag number is below or at the tag's next number and that
    -- is absent from the log (or only in a refused entry) was not written (a write appends to the log and moves the
    -- next number past it; SPEC says "below", and "at" is just as certain: a terminal reports an unknown outcome only
    -- after it stopped writing).
    FOR v_unknown IN
        SELECT x.id FROM ledger.transaction x
         WHERE x.tag_id = v_tag.id AND x.state = 'TerminalConfirmUnknown'
           AND x.tag_tx_number <= p_tag_tx_number AND x.id <> ALL (v_seen)
         ORDER BY x.id
    LOOP
        PERFORM ledger.set_state(v_unknown, 'Aborted', v_actor,
                            jsonb_build_object('reason', 'tag log shows no charge', 'tag_tx_number', p_tag_tx_number));
    END LOOP;

    SELECT a.balance, a.held INTO balance, held FROM ledger.account a WHERE a.id = v_tag.account_id;
    SELECT tg.status::text INTO status FROM ledger.tag tg WHERE tg.id = v_tag.id;
    uid := v_uid;
    balance := coalesce(balance, 0); held := coalesce(held, 0); status := coalesce(status, 'new');
    available := balance - held;
    acknowledged := v_ack;
    refused := v_refused;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.tag_sync IS
    'First tap: uploads the tag''s unacknowledged log, books what it proves, refuses untrusted entries, resolves unknown '
    'outcomes. Returns uid, status (new, active, blocked), balance, held, available, the acknowledged and the refused '
    'entries (with their problem).';
