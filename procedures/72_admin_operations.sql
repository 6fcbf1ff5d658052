SET LOCAL ROLE festpay_owner;

-- The admin site's operations pages: customers, transactions, the resolution queue, reports, fiscal status, closing a
-- till and the live dashboard, all of the event the admin site runs (ledger.admin_event_id). Each api function takes
-- the admin's session token first and checks the privilege with ledger.admin_authorize: view to read, support (block,
-- move, chargeback, resolve) or finance (close a till) to change. A change delegates to the function that owns its
-- rule (api.set_tag_blocked, api.transfer, api.chargeback, api.resolve_transaction, api.close_cashpoint) and writes one
-- ledger.admin_audit row in the same transaction.
--
-- Time filters without an index on time (each index costs the purchase path): transaction ids rise with created_at
-- (ledger.transaction_id_bound turns a time into an id bound on the primary key), and a transaction commits within
-- 15 minutes of its creation unless it is in the partial index transaction_late_commit. So the transactions committed
-- in a window are an id slice plus a few late ones (ledger.committed_in), and whole past hours of sales are kept in
-- ledger.sales_hour once they can no longer change (ledger.sales_hours).

CREATE OR REPLACE FUNCTION ledger.longest_booking()
RETURNS interval LANGUAGE sql IMMUTABLE AS $$
-- How long a database transaction that writes ledger.transaction runs at most, from its start (its now(): created_at,
-- committed_at) to its commit: api calls take milliseconds, a replication batch seconds.
-- Returns 10 minutes: the margin of ledger.transaction_id_bound and of ledger.sales_hours.
    SELECT interval '10 minutes';
$$;

CREATE OR REPLACE FUNCTION ledger.transaction_id_bound(p_time timestamptz, p_upper boolean)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
-- Turns a time into a bound on transaction ids, so that a time filter reads a slice of the primary key: ids rise with
-- created_at, except that created_at is when the inserting database transaction began, at most ledger.longest_booking()
-- before the insert. A binary search over the primary key (about 20 index probes).
-- Returns, for p_upper false, an id at or below every transaction created at or after p_time; for p_upper true, an id
-- above every transaction created before p_time; NULL when no bound is needed (or p_time is NULL or infinite).
DECLARE
    v_target timestamptz := p_time + CASE WHEN p_upper THEN 1 ELSE -1 END * ledger.longest_booking();
    v_lo bigint;
    v_hi bigint;
    v_first bigint;
    v_mid bigint;
    r record;
BEGIN
    IF p_time IS NULL OR NOT isfinite(p_time) THEN
        RETURN NULL;
    END IF;
    SELECT min(t.id), max(t.id) + 1 INTO v_lo, v_hi FROM ledger.transaction t;
    v_first := v_lo;
    -- Invariant: the first row at or after v_hi (if any) was created at or after v_target; rows below v_lo, before.
    -- Any row created at or after p_time lies at or above v_lo, any row created before p_time below v_hi, as long as
    -- no row was inserted more than the margin after its database transaction began.
    WHILE v_lo < v_hi LOOP
        v_mid := v_lo + (v_hi - v_lo) / 2;
        SELECT t.id, t.created_at INTO r FROM ledger.transaction t WHERE t.id >= v_mid ORDER BY t.id LIMIT 1;
        IF r.created_at >= v_target THEN
            v_hi := v_mid;
        ELSE
            v_lo := r.id + 1;
        END IF;
    END LOOP;
    IF p_upper THEN
        -- At the end of the table no bound is needed (and rows inserted meanwhile must not be cut off).
        RETURN CASE WHEN EXISTS (SELECT FROM ledger.transaction t WHERE t.id >= v_lo) THEN v_lo END;
    END IF;
    RETURN CASE WHEN v_lo > v_first THEN v_lo END;
END
$$;

CREATE OR REPLACE FUNCTION ledger.committed_in(p_event_id bigint, p_from timestamptz, p_to timestamptz,
                                               p_lo bigint, p_hi bigint)
RETURNS SETOF ledger.transaction LANGUAGE sql STABLE AS $$
-- The transactions of an event committed in [p_from, p_to): those committed within 15 minutes of their creation lie
-- in the id slice [p_lo, p_hi) (ledger.commit_slice), the rest in the partial index transaction_late_commit (whose
-- predicate this repeats word for word). Inlined into the caller's query.
-- Returns the transaction rows.
    SELECT t.* FROM ledger.transaction t
     WHERE t.event_id = p_event_id AND t.id >= p_lo AND t.id < p_hi
       AND t.committed_at >= p_from AND t.committed_at < p_to
       AND t.committed_at - t.created_at <= interval '15 minutes'
    UNION ALL
    SELECT t.* FROM ledger.transaction t
     WHERE t.committed_at - t.created_at > interval '15 minutes'
       AND t.event_id = p_event_id AND t.committed_at >= p_from AND t.committed_at < p_to;
$$;

CREATE OR REPLACE FUNCTION ledger.event_start(p_event_id bigint)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
-- When an event's transactions begin: its creation, or the first transaction of one of its terminals if that is older
-- (only data written into the ledger directly can be; one index probe per terminal assignment).
-- Returns the time, NULL for an unknown event.
    SELECT least(e.created_at, (SELECT min(f.created_at)
                                  FROM ledger.assignment a
                                 CROSS JOIN LATERAL (SELECT t.created_at FROM ledger.transaction t
                                                      WHERE t.assignment_id = a.id
                                                      ORDER BY t.terminal_tx_number LIMIT 1) f
                                 WHERE a.event_id = e.id))
      FROM ledger.event e WHERE e.id = p_event_id;
$$;

CREATE OR REPLACE FUNCTION ledger.commit_slice(p_event_id bigint, INOUT p_from timestamptz, INOUT p_to timestamptz,
                                               OUT lo bigint, OUT hi bigint)
LANGUAGE plpgsql STABLE AS $$
-- The arguments of ledger.committed_in for a window of an event (NULL: open on that side): the window, starting no
-- earlier than the event (ledger.event_start), and the id slice holding every transaction committed in it within
-- 15 minutes of its creation.
-- Returns p_from, p_to (infinity for NULL), lo and hi.
BEGIN
    p_from := greatest(p_from, ledger.event_start(p_event_id));
    p_to := coalesce(p_to, 'infinity');
    lo := coalesce(ledger.transaction_id_bound(p_from - interval '15 minutes', false), 0);
    hi := coalesce(ledger.transaction_id_bound(p_to, true), 9223372036854775807);
END
$$;

CREATE OR REPLACE FUNCTION ledger.sales_hours(p_event_id bigint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (hour timestamptz, sales bigint, gross bigint) LANGUAGE plpgsql AS $$
-- The committed purchases of an event per hour of its time zone (by committed_at) in [p_from, p_to) (NULL: open):
-- how many and their amount. Whole hours inside the window that ended more than ledger.longest_booking() ago can no
-- longer change: they are read from ledger.sales_hour, and stored there first when missing. The rest of the window
-- is summed from the transactions (ledger.committed_in).
-- Returns one row per hour from the first to the last hour with a sale (0 for hours between without), oldest first.
#variable_conflict use_column
DECLARE
    v_tz text;
    w record;
    v_from timestamptz;
    v_to timestamptz;
    v_a timestamptz;
    v_b timestamptz;
    v_missing_from timestamptz;
    v_missing_to timestamptz;
    w1 record;
    w2 record;
BEGIN
    SELECT e.time_zone INTO v_tz FROM ledger.event e WHERE e.id = p_event_id;
    w := ledger.commit_slice(p_event_id, p_from, p_to);
    v_from := w.p_from;
    v_to := w.p_to;
    -- The cached span [v_a, v_b): the whole hours inside the window up to the last final one.
    v_a := date_trunc('hour', v_from, v_tz);
    v_a := v_a + CASE WHEN v_a < v_from THEN interval '1 hour' ELSE interval '0' END;
    v_b := least(date_trunc('hour', v_to, v_tz), date_trunc('hour', now() - ledger.longest_booking(), v_tz));
    IF v_a < v_b THEN
        SELECT min(h.h), max(h.h) + interval '1 hour' INTO v_missing_from, v_missing_to
          FROM generate_series(v_a, v_b - interval '1 hour', interval '1 hour') h(h)
         WHERE NOT EXISTS (SELECT FROM ledger.sales_hour c WHERE c.event_id = p_event_id AND c.time_zone = v_tz
                                                              AND c.hour = h.h);
        IF v_missing_from IS NOT NULL AND current_setting('transaction_read_only') = 'off' THEN
            w := ledger.commit_slice(p_event_id, v_missing_from, v_missing_to);
            INSERT INTO ledger.sales_hour (event_id, time_zone, hour, sales, gross)
            SELECT p_event_id, v_tz, h.h, coalesce(s.n, 0), coalesce(s.gross, 0)
              FROM generate_series(v_missing_from, v_missing_to - interval '1 hour', interval '1 hour') h(h)
              LEFT JOIN (SELECT date_trunc('hour', t.committed_at, v_tz) AS hr, count(*) AS n, sum(t.amount) AS gross
                           FROM ledger.committed_in(p_event_id, w.p_from, w.p_to, w.lo, w.hi) t
                          WHERE t.type = 'purchase'
                          GROUP BY 1) s ON s.hr = h.h
            ON CONFLICT DO NOTHING;
        END IF;
        -- (A read-only transaction, e.g. on a standby, stores nothing: the missing hours are summed below as well.)
        SELECT min(h.h) INTO v_missing_from
          FROM generate_series(v_a, v_b - interval '1 hour', interval '1 hour') h(h)
         WHERE NOT EXISTS (SELECT FROM ledger.sales_hour c WHERE c.event_id = p_event_id AND c.time_zone = v_tz
                                                              AND c.hour = h.h);
        v_b := coalesce(v_missing_from, v_b);
    END IF;
    IF v_a >= v_b THEN
        v_a := v_to;          -- nothing cached: the whole window is summed from the transactions
        v_b := v_to;
    END IF;
    w1 := ledger.commit_slice(p_event_id, v_from, v_a);
    w2 := ledger.commit_slice(p_event_id, v_b, v_to);
    RETURN QUERY
    WITH live AS (
        SELECT t.committed_at, t.amount FROM ledger.committed_in(p_event_id, w1.p_from, w1.p_to, w1.lo, w1.hi) t
         WHERE t.type = 'purchase'
        UNION ALL
        SELECT t.committed_at, t.amount FROM ledger.committed_in(p_event_id, w2.p_from, w2.p_to, w2.lo, w2.hi) t
         WHERE t.type = 'purchase'),
    hours AS (
        SELECT c.hour AS h, c.sales AS n, c.gross AS g FROM ledger.sales_hour c
         WHERE c.event_id = p_event_id AND c.time_zone = v_tz AND c.hour >= v_a AND c.hour < v_b
        UNION ALL
        SELECT date_trunc('hour', l.committed_at, v_tz), count(*), sum(l.amount) FROM live l GROUP BY 1),
    total AS (SELECT h.h, sum(h.n)::bigint AS n, sum(h.g)::bigint AS g FROM hours h GROUP BY h.h),
    span AS (SELECT min(t.h) AS first, max(t.h) AS last FROM total t WHERE t.n > 0)
    SELECT x.h, coalesce(t.n, 0), coalesce(t.g, 0)
      FROM span s
      CROSS JOIN LATERAL generate_series(s.first, s.last, interval '1 hour') x(h)
      LEFT JOIN total t ON t.h = x.h
     ORDER BY x.h;
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_reason(p_reason text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks the reason an admin gives for a change: 1 to 1000 characters after trimming.
-- Returns it trimmed; raises validation (field reason).
DECLARE
    v text := btrim(p_reason);
BEGIN
    IF v IS NULL OR length(v) NOT BETWEEN 1 AND 1000 THEN
        PERFORM ledger.fail('validation', 'say why, in 1 to 1000 characters', '{"field": "reason"}');
    END IF;
    RETURN v;
END
$$;

-- Dropped where it exists: the admin functions word the ledger's messages themselves (ledger.admin_uid,
-- ledger.admin_money).
DROP FUNCTION IF EXISTS ledger.admin_problem_message(text);

CREATE OR REPLACE FUNCTION ledger.admin_transaction_of(p_event_id bigint, p_id bigint)
RETURNS ledger.transaction LANGUAGE plpgsql STABLE AS $$
-- A transaction of the event the admin site runs.
-- Returns the row; raises not-found for an unknown id or one of another event.
DECLARE
    t ledger.transaction;
BEGIN
    SELECT * INTO t FROM ledger.transaction x WHERE x.id = p_id AND x.event_id = p_event_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('transaction %s does not exist', p_id),
                            jsonb_build_object('transaction_id', p_id));
    END IF;
    RETURN t;
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_filter_time(p_filter jsonb, p_key text, p_time_zone text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
-- Reads the time p_key (from: the start, to: the end) of a filter: a date and time as a form's datetime-local field
-- sends it (YYYY-MM-DDTHH:MM, a space for the T and seconds optional) in the event's time zone p_time_zone, or with
-- its own offset (RFC 3339).
-- Returns it, NULL when absent; raises validation naming p_key.
DECLARE
    v text := btrim(p_filter ->> p_key);
    v_label text := CASE p_key WHEN 'from' THEN 'the start' WHEN 'to' THEN 'the end' ELSE p_key END;
BEGIN
    IF jsonb_typeof(p_filter -> p_key) IS NULL OR jsonb_typeof(p_filter -> p_key) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_filter -> p_key) = 'string'
       AND v ~ '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})?$' THEN
        BEGIN
            IF v ~ '([Zz]|[+-]\d{2}:\d{2})$' THEN
                RETURN v::timestamptz;
            END IF;
            RETURN v::timestamp AT TIME ZONE p_time_zone;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            PERFORM ledger.fail('validation', format('%s %s is not a possible time', v_label, v),
                                jsonb_build_object('field', p_key));
        END;
    END IF;
    PERFORM ledger.fail('validation', format('%s must be a time like 2026-07-04 21:30', v_label),
                        jsonb_build_object('field', p_key));
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_filter_id(p_filter jsonb, p_key text, p_what text)
RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
-- Reads the id p_key of a filter (a choice of the form, e.g. merchant_id): a JSON number or a string of digits.
-- Returns it; raises validation naming p_key ("there is no such p_what") when it is no possible id.
DECLARE
    v text := btrim(p_filter ->> p_key);
BEGIN
    IF jsonb_typeof(p_filter -> p_key) IN ('number', 'string') AND v ~ '^[0-9]{1,18}$' AND v::bigint > 0 THEN
        RETURN v::bigint;
    END IF;
    PERFORM ledger.fail('validation', format('there is no such %s', p_what), jsonb_build_object('field', p_key));
END
$$;

-- ---------------------------------------------------------------- customers

CREATE OR REPLACE FUNCTION api.admin_customers(p_token text, p_q text)
RETURNS TABLE (uid text, status text, balance bigint, held bigint, available bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Finds tags of the event by UID prefix (privilege view): case, spaces and colons do not matter; an empty search
-- lists the first tags. Anything that is no UID prefix simply finds nothing.
-- Returns at most 50 tags in UID order with balance, held and available in cents.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
    v_q text := left(upper(translate(btrim(coalesce(p_q, '')), ': ', '')), 20);
BEGIN
    -- A range on the unique index (event_id, uid): UIDs are upper-case hex, all below v_q || 'G'.
    RETURN QUERY
    SELECT g.uid, g.status::text, a.balance, a.held::bigint, a.balance - a.held
      FROM ledger.tag g JOIN ledger.account a ON a.id = g.account_id
     WHERE g.event_id = v_event AND g.uid >= v_q AND g.uid < v_q || 'G' AND left(g.uid, length(v_q)) = v_q
     ORDER BY g.uid
     LIMIT 50;
END
$$;
COMMENT ON FUNCTION api.admin_customers IS
    'Tags of the event by UID prefix, at most 50, with balance, held, available (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_customer(p_token text, p_uid text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A tag of the event with its money and statement (privilege view): every transaction of its account, booked or not
-- (a transfer it received too), newest first, at most 500 (statement_total says how many there are): when created,
-- type, state, amount and fee as the transaction has them, booked (what it moved on this tag's balance, from the
-- booking lines), counterparty, merchant and items as sold; and its payout (ledger.payout_customer_json).
-- Returns {uid, status, balance, held, available, statement_total, statement: [...], payout: {...}}; raises not-found,
-- validation.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
    v_tag ledger.tag := ledger.find_tag(v_event, ledger.admin_uid(p_uid, 'uid'));
    a ledger.account;
    v_ids bigint[];
    v_statement jsonb;
BEGIN
    SELECT * INTO a FROM ledger.account x WHERE x.id = v_tag.account_id;
    -- Booked ones through the booking lines' account indexes, the others through transaction_unbooked_by_account.
    SELECT array_agg(x.id ORDER BY x.id DESC) INTO v_ids
      FROM (SELECT b.transaction_id AS id FROM ledger.booking b WHERE b.debit_account_id = a.id
            UNION
            SELECT b.transaction_id FROM ledger.booking b WHERE b.credit_account_id = a.id
            UNION
            SELECT t.id FROM ledger.transaction t WHERE t.account_id = a.id AND t.state <> 'Committed') x;
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'transaction_id', t.id, 'at', t.created_at, 'type', t.type, 'state', t.state, 'amount', t.amount,
               'fee', t.fee,
               'booked', (SELECT coalesce(sum(CASE WHEN b.debit_account_id = a.id THEN b.amount ELSE -b.amount END), 0)
                            FROM ledger.booking b
                           WHERE b.transaction_id = t.id AND a.id IN (b.debit_account_id, b.credit_account_id)),
               'counterparty', o.kind || ':' || o.name, 'merchant', m.name,
               'items', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                    'product_id', i.product_id, 'name', i.name, 'quantity', i.quantity,
                                    'unit_price', i.unit_price, 'vat_rate', i.vat_rate, 'returnable', i.returnable)
                                  ORDER BY i.line_no), '[]')
                           FROM ledger.item i WHERE i.transaction_id = t.id))
             ORDER BY t.id DESC), '[]')
      INTO v_statement
      FROM ledger.transaction t
      JOIN ledger.account o ON o.id = CASE WHEN t.account_id = a.id THEN t.other_account_id ELSE t.account_id END
      LEFT JOIN ledger.merchant m ON m.account_id = t.other_account_id
     WHERE t.id = ANY (v_ids[1:500]);
    RETURN jsonb_build_object('uid', v_tag.uid, 'status', v_tag.status, 'balance', a.balance, 'held', a.held,
                              'available', a.balance - a.held, 'statement_total', coalesce(cardinality(v_ids), 0),
                              'statement', v_statement, 'payout', ledger.payout_customer_json(v_event, v_tag.id));
END
$$;
COMMENT ON FUNCTION api.admin_customer IS
    'A tag with balance, held, available, its statement (transactions with items, newest first) and its payout '
    '(privilege view).';

CREATE OR REPLACE FUNCTION ledger.admin_tag_block(u ledger.admin_user, p_tag ledger.tag, p_blocked boolean,
                                                  p_reason text)
RETURNS text LANGUAGE plpgsql AS $$
-- Blocks (or unblocks) tag p_tag for admin u through api.set_tag_blocked, audited as customer.block / customer.unblock
-- with the reason. Returns the tag's status after.
DECLARE
    v_status text := api.set_tag_blocked(p_tag.event_id, p_tag.uid, p_blocked);
BEGIN
    PERFORM ledger.admin_audit(u.id, CASE WHEN p_blocked THEN 'customer.block' ELSE 'customer.unblock' END,
                               'tag:' || p_tag.uid, jsonb_build_object('status', p_tag.status),
                               jsonb_build_object('status', v_status, 'reason', p_reason));
    RETURN v_status;
END
$$;

CREATE OR REPLACE FUNCTION api.admin_customer_block(p_token text, p_uid text, p_blocked boolean, p_reason text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Blocks a tag (lost or stolen) or unblocks it (privilege support), through api.set_tag_blocked; audited with the
-- reason. Returns the tag's status after; raises validation (reason, blocked), not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'support');
    v_event bigint := ledger.admin_event_id();
    v_reason text := ledger.admin_reason(p_reason);
    v_tag ledger.tag;
BEGIN
    IF p_blocked IS NULL THEN
        PERFORM ledger.fail('validation', 'say whether to block or unblock', '{"field": "blocked"}');
    END IF;
    v_tag := ledger.find_tag(v_event, ledger.admin_uid(p_uid, 'uid'));
    RETURN ledger.admin_tag_block(u, v_tag, p_blocked, v_reason);
END
$$;
COMMENT ON FUNCTION api.admin_customer_block IS
    'Blocks or unblocks a tag, with a reason (privilege support, audited). Returns the status.';

CREATE OR REPLACE FUNCTION api.admin_customer_move(p_token text, p_uid text, p_new_uid text, p_reason text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Moves what is available on a tag to a new tag and blocks the old one (a lost wristband; privilege support): one
-- api.transfer of the whole available balance (the new tag is created when unknown), then api.set_tag_blocked;
-- audited with the reason. Returns the transfer's transaction id; raises validation (new_uid, reason), not-found,
-- tag-blocked (the new tag), max-balance-exceeded.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'support');
    v_event bigint := ledger.admin_event_id();
    v_reason text := ledger.admin_reason(p_reason);
    v_tag ledger.tag := ledger.find_tag(v_event, ledger.admin_uid(p_uid, 'uid'));
    v_new text := ledger.admin_uid(p_new_uid, 'new_uid');
    a ledger.account;
    r record;
    v_text text;
    v_detail jsonb;
BEGIN
    IF v_new = v_tag.uid THEN
        PERFORM ledger.fail('validation', 'the new tag must be another tag', '{"field": "new_uid"}');
    END IF;
    SELECT * INTO a FROM ledger.account x WHERE x.id = v_tag.account_id;
    IF a.balance - a.held <= 0 THEN
        PERFORM ledger.fail('validation', format('tag %s has nothing available to move', v_tag.uid), '{"field": "new_uid"}');
    END IF;
    BEGIN
        SELECT * INTO r FROM api.transfer(v_event, v_tag.uid, v_new);
    EXCEPTION WHEN SQLSTATE 'FP021' THEN                                -- max-balance-exceeded, said in money
        GET STACKED DIAGNOSTICS v_text = PG_EXCEPTION_DETAIL;
        v_detail := v_text::jsonb;
        PERFORM ledger.fail('max-balance-exceeded',
                            format('tag %s would then hold %s, more than the maximum balance of %s', v_new,
                                   ledger.admin_money(v_event, (v_detail ->> 'balance')::bigint + a.balance - a.held),
                                   ledger.admin_money(v_event, (v_detail ->> 'max_balance')::bigint)),
                            v_detail || '{"field": "new_uid"}');
    END;
    PERFORM api.set_tag_blocked(v_event, v_tag.uid, true);
    PERFORM ledger.admin_audit(u.id, 'customer.move', 'tag:' || v_tag.uid,
                               jsonb_build_object('status', v_tag.status, 'balance', a.balance, 'held', a.held),
                               jsonb_build_object('status', 'blocked', 'new_uid', v_new, 'transaction_id', r.transaction_id,
                                                  'amount', (SELECT t.amount FROM ledger.transaction t WHERE t.id = r.transaction_id),
                                                  'balance', r.from_balance, 'new_balance', r.to_balance,
                                                  'reason', v_reason));
    RETURN r.transaction_id;
END
$$;
COMMENT ON FUNCTION api.admin_customer_move IS
    'Moves a tag''s available balance to a new tag and blocks the old one (privilege support, audited). Returns the transfer id.';

CREATE OR REPLACE FUNCTION api.admin_chargeback(p_token text, p_transaction_id bigint, p_amount bigint, p_reason text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Gives (part of) a committed sale of the event back to its customer (privilege support) through api.chargeback,
-- which never returns more than is left of the sale's merchant share; audited with the reason. Returns the
-- chargeback's transaction id; raises validation (transaction_id: no committed purchase of the event; amount: not
-- more than 0, or more than is left, detail left; reason).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'support');
    v_event bigint := ledger.admin_event_id();
    v_reason text := ledger.admin_reason(p_reason);
    p ledger.transaction;
    r record;
    v_detail text;
BEGIN
    SELECT * INTO p FROM ledger.transaction x WHERE x.id = p_transaction_id AND x.event_id = v_event;
    IF NOT FOUND THEN
        PERFORM ledger.fail('validation', format('there is no transaction %s in this event', p_transaction_id),
                            '{"field": "transaction_id"}');
    ELSIF p.type <> 'purchase' THEN
        PERFORM ledger.fail('validation', format('transaction %s is a %s: only a purchase can be charged back', p.id,
                                                 replace(p.type::text, '_', ' ')),
                            '{"field": "transaction_id"}');
    ELSIF p.state <> 'Committed' THEN
        PERFORM ledger.fail('validation', format('purchase %s is %s, not committed: only a committed purchase can be charged back',
                                                 p.id, p.state),
                            '{"field": "transaction_id"}');
    ELSIF p_amount IS NULL OR p_amount <= 0 THEN
        PERFORM ledger.fail('validation', format('the amount must be more than %s', ledger.admin_money(v_event, 0)),
                            '{"field": "amount"}');
    END IF;
    BEGIN
        SELECT * INTO r FROM api.chargeback(p.id, p_amount);
    EXCEPTION WHEN SQLSTATE 'FP023' THEN                                -- chargeback-exceeds-purchase
        GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
        PERFORM ledger.fail('validation', format('only %s of purchase %s is left to charge back',
                                                 ledger.admin_money(v_event, (v_detail::jsonb ->> 'left')::bigint), p.id),
                            v_detail::jsonb || '{"field": "amount"}');
    END;
    PERFORM ledger.admin_audit(u.id, 'transaction.chargeback', 'transaction:' || p.id,
                               jsonb_build_object('type', p.type, 'state', p.state, 'amount', p.amount),
                               jsonb_build_object('chargeback_id', r.transaction_id, 'amount', p_amount,
                                                  'balance', r.balance, 'reason', v_reason));
    RETURN r.transaction_id;
END
$$;
COMMENT ON FUNCTION api.admin_chargeback IS
    'Charges back part or all of a committed sale, never more than is left (privilege support, audited). Returns the chargeback id.';

-- ---------------------------------------------------------------- transactions

CREATE OR REPLACE FUNCTION api.admin_transactions(p_token text, p_filter jsonb, p_before_id bigint DEFAULT NULL,
                                                  p_limit integer DEFAULT 50)
RETURNS TABLE (id bigint, created_at timestamptz, type text, state text, amount bigint, uid text, merchant text,
               "position" text, assignment_id bigint, terminal_tx_number bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The event's transactions, newest first, one page of p_limit (1 to 500) below p_before_id (privilege view). Filter
-- keys (absent, null or "" = no filter): from, to (on created_at, to exclusive; RFC 3339 or a form's datetime-local
-- value, ledger.admin_filter_time), state, type, merchant_id, position_id, assignment_id, uid (its account's
-- transactions, a transfer it received too), amount_min, amount_max (cents); numbers as JSON numbers or strings of
-- digits. The query reads the primary key backwards from the top of the id slice of the time filter
-- (ledger.transaction_id_bound), or, for uid, the tag's transactions by index.
-- Returns the rows; raises validation naming the bad filter key (field), or field filter for an unknown key.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
    f jsonb;
    v_unknown text;
    v_where text := 't.event_id = $1';
    v_tz text;
    v_from timestamptz;
    v_to timestamptz;
    v_state text;
    v_type text;
    v_merchant bigint;
    v_position bigint;
    v_assignment bigint;
    v_account bigint;
    v_min bigint;
    v_max bigint;
    v_lo bigint;
    v_hi bigint;
BEGIN
    IF p_filter IS NOT NULL AND jsonb_typeof(p_filter) <> 'object' THEN
        PERFORM ledger.fail('validation', 'the filter must be a JSON object', '{"field": "filter"}');
    END IF;
    SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') INTO f
      FROM jsonb_each(coalesce(p_filter, '{}')) e
     WHERE e.value NOT IN ('null'::jsonb, '""'::jsonb);
    SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown FROM jsonb_object_keys(f) k
     WHERE k NOT IN ('from', 'to', 'state', 'type', 'merchant_id', 'position_id', 'assignment_id', 'uid',
                     'amount_min', 'amount_max');
    IF v_unknown IS NOT NULL THEN
        PERFORM ledger.fail('validation', format('unknown filter %s', v_unknown), '{"field": "filter"}');
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 500 THEN
        PERFORM ledger.fail('validation', 'a page has 1 to 500 rows', '{"field": "limit"}');
    END IF;
    SELECT e.time_zone INTO v_tz FROM ledger.event e WHERE e.id = v_event;
    v_from := ledger.admin_filter_time(f, 'from', v_tz);
    v_to := ledger.admin_filter_time(f, 'to', v_tz);
    IF v_from IS NOT NULL THEN
        v_lo := ledger.transaction_id_bound(v_from, false);
        v_where := v_where || ' AND t.created_at >= $2';
    END IF;
    IF v_to IS NOT NULL THEN
        v_hi := ledger.transaction_id_bound(v_to, true);
        v_where := v_where || ' AND t.created_at < $3';
    END IF;
    v_hi := least(v_hi, p_before_id);
    IF v_lo IS NOT NULL THEN
        v_where := v_where || ' AND t.id >= $4';
    END IF;
    IF v_hi IS NOT NULL THEN
        v_where := v_where || ' AND t.id < $5';
    END IF;
    IF f ? 'state' THEN
        v_state := f ->> 'state';
        IF NOT v_state = ANY (enum_range(NULL::ledger.tx_state)::text[]) THEN
            PERFORM ledger.fail('validation', format('there is no state %L', v_state), '{"field": "state"}');
        END IF;
        v_where := v_where || ' AND t.state = $6::ledger.tx_state';
    END IF;
    IF f ? 'type' THEN
        v_type := f ->> 'type';
        IF NOT v_type = ANY (enum_range(NULL::ledger.tx_type)::text[]) THEN
            PERFORM ledger.fail('validation', format('there is no type %L', v_type), '{"field": "type"}');
        END IF;
        v_where := v_where || ' AND t.type = $7::ledger.tx_type';
    END IF;
    IF f ? 'merchant_id' THEN
        SELECT m.account_id INTO v_merchant FROM ledger.merchant m
         WHERE m.id = ledger.admin_filter_id(f, 'merchant_id', 'merchant') AND m.event_id = v_event;
        IF NOT FOUND THEN
            PERFORM ledger.fail('validation', 'there is no such merchant in this event', '{"field": "merchant_id"}');
        END IF;
        v_where := v_where || ' AND t.other_account_id = $8';
    END IF;
    IF f ? 'position_id' THEN
        v_position := ledger.admin_filter_id(f, 'position_id', 'position');
        v_where := v_where || ' AND t.assignment_id IN (SELECT a.id FROM ledger.assignment a WHERE a.position_id = $9)';
    END IF;
    IF f ? 'assignment_id' THEN
        v_assignment := ledger.admin_filter_id(f, 'assignment_id', 'terminal');
        v_where := v_where || ' AND t.assignment_id = $10';
    END IF;
    IF f ? 'uid' THEN
        SELECT g.account_id INTO v_account FROM ledger.tag g
         WHERE g.event_id = v_event AND g.uid = ledger.admin_uid(f ->> 'uid', 'uid');
        IF NOT FOUND THEN
            RETURN;                                   -- an unknown tag has no transactions
        END IF;
        v_where := v_where || ' AND t.id IN (SELECT b.transaction_id FROM ledger.booking b WHERE b.debit_account_id = $11'
                           || ' UNION ALL SELECT b.transaction_id FROM ledger.booking b WHERE b.credit_account_id = $11'
                           || ' UNION ALL SELECT x.id FROM ledger.transaction x WHERE x.account_id = $11'
                           || ' AND x.state <> ''Committed'')';
    END IF;
    IF f ? 'amount_min' THEN
        v_min := ledger.admin_setting(f, 'amount_min', 'the smallest amount', 0, 9007199254740991, v_event);
        v_where := v_where || ' AND t.amount >= $12';
    END IF;
    IF f ? 'amount_max' THEN
        v_max := ledger.admin_setting(f, 'amount_max', 'the largest amount', 0, 9007199254740991, v_event);
        v_where := v_where || ' AND t.amount <= $13';
    END IF;
    -- The page first (the primary key read backwards), then its names.
    RETURN QUERY EXECUTE
        'SELECT t.id, t.created_at, t.type::text, t.state::text, t.amount::bigint, g.uid, m.name, p.name,'
        '       t.assignment_id, t.terminal_tx_number::bigint'
        '  FROM (SELECT t.* FROM ledger.transaction t WHERE ' || v_where || ' ORDER BY t.id DESC LIMIT $14) t'
        '  LEFT JOIN ledger.tag g ON g.id = t.tag_id'
        '  LEFT JOIN ledger.merchant m ON m.account_id = t.other_account_id'
        '  LEFT JOIN ledger.assignment a ON a.id = t.assignment_id'
        '  LEFT JOIN ledger.position p ON p.id = a.position_id'
        ' ORDER BY t.id DESC'
    USING v_event, v_from, v_to, v_lo, v_hi, v_state, v_type, v_merchant, v_position, v_assignment, v_account,
          v_min, v_max, p_limit;
END
$$;
COMMENT ON FUNCTION api.admin_transactions IS
    'The event''s transactions, filtered, newest first, keyset pagination on id (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_transaction(p_token text, p_id bigint)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- One transaction of the event with everything known about it (privilege view): the row with its tag, merchant,
-- position and device; its items as sold; its booking lines (accounts as kind:name); its states (below); the
-- violations logged for it, with their review; the TSE signature; the transactions linked to it (chargebacks,
-- the funding top-up); receipt_url when it is a committed receipt.
-- states: the first state at created_at, then every change of ledger.transaction.state_changes (from, to, when, by).
-- Returns {transaction, items, lines, states, violations, signature, linked, receipt_url}; raises not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
    t ledger.transaction := ledger.admin_transaction_of(v_event, p_id);
BEGIN
    RETURN jsonb_build_object(
        'transaction', (SELECT (to_jsonb(t) - 'state_changes') || jsonb_build_object(
                                   'uid', g.uid, 'merchant', m.name, 'position', p.name, 'device', a.device,
                                   'account', ac.kind || ':' || ac.name, 'other_account', o.kind || ':' || o.name,
                                   'client_id', ledger.tse_client_id(t.assignment_id))
                          FROM ledger.account ac
                          JOIN ledger.account o ON o.id = t.other_account_id
                          LEFT JOIN ledger.tag g ON g.id = t.tag_id
                          LEFT JOIN ledger.merchant m ON m.account_id = t.other_account_id
                          LEFT JOIN ledger.assignment a ON a.id = t.assignment_id
                          LEFT JOIN ledger.position p ON p.id = a.position_id
                         WHERE ac.id = t.account_id),
        'items', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                     'line_no', i.line_no, 'product_id', i.product_id, 'name', i.name,
                                     'quantity', i.quantity, 'unit_price', i.unit_price, 'vat_rate', i.vat_rate,
                                     'returnable', i.returnable, 'gross', i.quantity * i.unit_price) ORDER BY i.line_no), '[]')
                    FROM ledger.item i WHERE i.transaction_id = t.id),
        'lines', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                     'line_no', b.line_no, 'debit', d.kind || ':' || d.name, 'credit', c.kind || ':' || c.name,
                                     'amount', b.amount, 'booked_at', b.booked_at) ORDER BY b.line_no), '[]')
                    FROM ledger.booking b
                    JOIN ledger.account d ON d.id = b.debit_account_id
                    JOIN ledger.account c ON c.id = b.credit_account_id
                   WHERE b.transaction_id = t.id),
        'states', (SELECT jsonb_agg(x.change ORDER BY x.n) FROM (
                      SELECT 0 AS n, jsonb_build_object('at', t.created_at, 'from', NULL,
                                                        'state', coalesce(t.state_changes[1].from_state, t.state),
                                                        'by', NULL) AS change
                      UNION ALL
                      SELECT c.n, jsonb_build_object('at', c.at, 'from', c.from_state, 'state', c.to_state, 'by', c.actor)
                        FROM unnest(t.state_changes) WITH ORDINALITY AS c(from_state, to_state, at, actor, n)) x),
        'violations', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                          'id', v.id, 'at', v.occurred_at, 'actor', v.actor, 'from', v.from_state,
                                          'to', v.to_state, 'reason', v.reason, 'payload', v.payload,
                                          'reviewed_at', r.reviewed_at, 'reviewed_by', r.reviewed_by) ORDER BY v.id), '[]')
                         FROM ledger.violation v LEFT JOIN ledger.violation_review r ON r.violation_id = v.id
                        WHERE v.transaction_id = t.id),
        'signature', (SELECT jsonb_build_object(
                                 'serial_number', s.tse_serial, 'client_id', s.client_id, 'process_type', s.process_type,
                                 'process_data', s.process_data, 'transaction_number', s.tse_tx_number,
                                 'signature_counter', s.signature_counter, 'start_time', s.start_time,
                                 'log_time', s.log_time, 'algorithm', s.algorithm,
                                 'signature', translate(encode(s.signature, 'base64'), E'\n', ''),
                                 'public_key', translate(encode(s.public_key, 'base64'), E'\n', ''),
                                 'signed_at', s.signed_at, 'late', s.late)
                        FROM ledger.tse_signature s WHERE s.transaction_id = t.id),
        'linked', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', x.id, 'type', x.type, 'state', x.state,
                                                               'amount', x.amount, 'created_at', x.created_at) ORDER BY x.id), '[]')
                     FROM ledger.transaction x WHERE (x.linked_id = t.id OR x.id = t.linked_id) AND x.event_id = v_event),
        'receipt_url', CASE WHEN t.state = 'Committed' AND ledger.is_receipt(t.type)
                            THEN '/admin/transactions/' || t.id || '/receipt' END);
END
$$;
COMMENT ON FUNCTION api.admin_transaction IS
    'One transaction with items, booking lines, states, violations, TSE signature, linked ones, receipt link (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_receipt(p_token text, p_transaction_id bigint)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The receipt of a committed transaction of the event (privilege view), as api.receipt makes it: the receipt_url of
-- api.admin_transaction shows it.
-- Returns the receipt document; raises not-found for another event's transaction or one that is no committed receipt.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    t ledger.transaction := ledger.admin_transaction_of(ledger.admin_event_id(), p_transaction_id);
BEGIN
    RETURN api.receipt(t.id);
END
$$;
COMMENT ON FUNCTION api.admin_receipt IS 'The receipt of a committed transaction (api.receipt) (privilege view).';

-- ---------------------------------------------------------------- the resolution queue

CREATE OR REPLACE FUNCTION ledger.admin_queue_items(p_event_id bigint)
RETURNS TABLE (kind text, transaction_id bigint, at timestamptz, uid text, amount bigint, detail jsonb)
LANGUAGE sql STABLE AS $$
-- What waits for an admin's decision in an event: transactions in TerminalConfirmUnknown or ExternalUnknown, online
-- payments the provider took that could not be booked (provider-refund: refund due, failed, or requested and not
-- carried out yet; at: when it became due), overdrafts not reviewed, and violations not reviewed, by kind:
-- refused-log-entry (tag log entries refused by api.tag_sync), implausible-offline-charge, violation (every other
-- refusal). The kind of a violation is the problem its reason starts with.
-- An online top-up (ExternalUnknown with a checkout) also shows what the relay last heard from the provider: the
-- checkout, how often the relay asked (checks), its last answer or error (last_answer) and when it asks next.
-- Returns every open item (detail: what the page shows and, for violations, violation_id to review it by).
    SELECT 'terminal-confirm-unknown', t.id, t.created_at, g.uid, t.amount::bigint,
           jsonb_build_object('state', t.state, 'type', t.type, 'held', t.held, 'assignment_id', t.assignment_id,
                              'terminal_tx_number', t.terminal_tx_number, 'tag_tx_number', t.tag_tx_number)
      FROM ledger.transaction t LEFT JOIN ledger.tag g ON g.id = t.tag_id
     WHERE t.state = 'TerminalConfirmUnknown' AND t.event_id = p_event_id
    UNION ALL
    SELECT 'external-unknown', t.id, t.created_at, g.uid, t.amount::bigint,
           jsonb_build_object('state', t.state, 'type', t.type, 'payment', t.payment, 'fee', t.fee)
           || CASE WHEN c.reference IS NOT NULL THEN
                  jsonb_build_object('reference', c.reference, 'checkout_id', c.checkout_id, 'checks', o.attempts,
                                     'last_answer', o.last_error, 'next_check', o.retry_at) ELSE '{}' END
      FROM ledger.transaction t LEFT JOIN ledger.tag g ON g.id = t.tag_id
      LEFT JOIN ledger.external_checkout c ON c.transaction_id = t.id
      LEFT JOIN ledger.outbox o ON o.topic = 'provider' AND o.transaction_id = t.id
     WHERE t.state = 'ExternalUnknown' AND t.event_id = p_event_id
    UNION ALL
    SELECT 'provider-refund', t.id, c.refund_due_at, g.uid, t.amount::bigint,
           jsonb_build_object('state', t.state, 'refund', c.refund_state, 'reason', c.refund_reason,
                              'reference', c.reference, 'checkout_id', c.checkout_id,
                              'requested_by', c.refund_requested_by, 'requested_at', c.refund_requested_at,
                              'error', CASE c.refund_state WHEN 'failed' THEN c.refund_error
                                                           WHEN 'requested' THEN o.last_error END)
      FROM ledger.external_checkout c
      JOIN ledger.transaction t ON t.id = c.transaction_id
      LEFT JOIN ledger.tag g ON g.id = t.tag_id
      LEFT JOIN ledger.outbox o ON o.topic = 'provider' AND o.transaction_id = c.transaction_id
     WHERE c.refund_state IN ('due', 'requested', 'failed') AND t.event_id = p_event_id
    UNION ALL
    SELECT 'overdraft', o.transaction_id, o.flagged_at, g.uid, t.amount::bigint,
           jsonb_build_object('balance_after', o.balance_after, 'type', t.type, 'state', t.state)
      FROM ledger.overdraft o
      JOIN ledger.transaction t ON t.id = o.transaction_id
      LEFT JOIN ledger.tag g ON g.account_id = o.account_id
     WHERE o.reviewed_at IS NULL AND t.event_id = p_event_id
    UNION ALL
    SELECT CASE WHEN split_part(v.reason, ':', 1) IN ('log-entry-forged', 'log-entry-foreign', 'log-entry-number-too-high',
                                                      'offline-limit-exceeded') THEN 'refused-log-entry'
                WHEN split_part(v.reason, ':', 1) = 'implausible-offline-charge' THEN 'implausible-offline-charge'
                ELSE 'violation' END,
           v.transaction_id, v.occurred_at, coalesce(g.uid, left(v.payload ->> 'uid', 40)),
           coalesce(t.amount, CASE WHEN jsonb_typeof(v.payload -> 'amount') = 'number'
                                   THEN CASE WHEN abs((v.payload ->> 'amount')::numeric) <= 9007199254740991
                                             THEN trunc((v.payload ->> 'amount')::numeric)::bigint END END),
           jsonb_build_object('violation_id', v.id, 'actor', v.actor, 'reason', v.reason, 'from_state', v.from_state,
                              'to_state', v.to_state, 'payload', v.payload)
      FROM ledger.violation v
      LEFT JOIN ledger.transaction t ON t.id = v.transaction_id
      LEFT JOIN ledger.tag g ON g.id = t.tag_id
     WHERE v.event_id = p_event_id
       AND NOT EXISTS (SELECT FROM ledger.violation_review r WHERE r.violation_id = v.id);
$$;

CREATE OR REPLACE FUNCTION api.admin_queue(p_token text)
RETURNS TABLE (kind text, transaction_id bigint, at timestamptz, uid text, amount bigint, detail jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The resolution queue of the event (privilege view): ledger.admin_queue_items, the oldest 500 of each kind, in the
-- order terminal-confirm-unknown, external-unknown, provider-refund, overdraft, refused-log-entry,
-- implausible-offline-charge, violation. Decide each with api.admin_queue_resolve, a refund with
-- api.admin_queue_refund.
-- Returns the items.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
BEGIN
    RETURN QUERY
    SELECT q.kind, q.transaction_id, q.at, q.uid, q.amount, q.detail
      FROM (SELECT i.*, row_number() OVER (PARTITION BY i.kind ORDER BY i.at, i.transaction_id) AS n
              FROM ledger.admin_queue_items(v_event) i) q
     WHERE q.n <= 500
     ORDER BY array_position(ARRAY['terminal-confirm-unknown', 'external-unknown', 'provider-refund', 'overdraft',
                                   'refused-log-entry', 'implausible-offline-charge', 'violation'], q.kind),
              q.at, q.transaction_id;
END
$$;
COMMENT ON FUNCTION api.admin_queue IS
    'What waits for an admin''s decision: unknown outcomes, payments to refund, overdrafts, refused entries, violations '
    '(privilege view).';

CREATE OR REPLACE FUNCTION api.admin_queue_resolve(p_token text, p_transaction_id bigint, p_outcome text, p_reason text,
                                                   p_violation_id bigint DEFAULT NULL)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Decides an item of the resolution queue (privilege support), with a reason, audited: Committed or Aborted decides a
-- TerminalConfirmUnknown or ExternalUnknown transaction (ledger.resolve: Committed books it, Aborted releases it);
-- reviewed closes the transaction's overdraft and violations, or with p_violation_id that one violation (the queue's
-- detail.violation_id; p_transaction_id may then be NULL). An online top-up may be aborted, never committed
-- (ledger.resolve); the relay polls the provider on until its final answer (ledger.provider_work, at most
-- ledger.provider_answer_limit after the checkout was created): declined is recorded, a paid after the abort makes
-- its refund due.
-- Returns the transaction's state after, or 'reviewed'; raises validation (outcome: also Committed for an online
-- top-up the provider has not reported paid; reason), not-found (nothing of that kind to decide), invalid-transition
-- (a transaction that does not wait for an admin).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'support');
    v_event bigint := ledger.admin_event_id();
    v_reason text;
    t ledger.transaction;
    r record;
    v_overdraft boolean := false;
    v_violations bigint[];
BEGIN
    IF p_outcome IS NULL OR p_outcome NOT IN ('Committed', 'Aborted', 'reviewed') THEN
        PERFORM ledger.fail('validation', 'the outcome is Committed, Aborted or reviewed', '{"field": "outcome"}');
    END IF;
    v_reason := ledger.admin_reason(p_reason);
    IF p_transaction_id IS NOT NULL THEN
        t := ledger.admin_transaction_of(v_event, p_transaction_id);
    ELSIF p_violation_id IS NULL OR p_outcome <> 'reviewed' THEN
        PERFORM ledger.fail('validation', 'name the transaction to decide', '{"field": "transaction_id"}');
    END IF;

    IF p_outcome = 'reviewed' THEN
        IF p_violation_id IS NULL THEN
            UPDATE ledger.overdraft o SET reviewed_at = now(), reviewed_by = u.username
             WHERE o.transaction_id = t.id AND o.reviewed_at IS NULL;
            v_overdraft := FOUND;
        END IF;
        WITH reviewed AS (
            INSERT INTO ledger.violation_review (violation_id, reviewed_by)
            SELECT v.id, u.username FROM ledger.violation v
             WHERE v.event_id = v_event
               AND (p_violation_id IS NULL OR v.id = p_violation_id)
               AND (p_transaction_id IS NULL OR v.transaction_id = p_transaction_id)
               AND NOT EXISTS (SELECT FROM ledger.violation_review x WHERE x.violation_id = v.id)
            ON CONFLICT DO NOTHING
            RETURNING violation_id)
        SELECT array_agg(violation_id ORDER BY violation_id) INTO v_violations FROM reviewed;
        IF NOT v_overdraft AND v_violations IS NULL THEN
            PERFORM ledger.fail('not-found', 'nothing of that is waiting for a review',
                                jsonb_build_object('transaction_id', p_transaction_id, 'violation_id', p_violation_id));
        END IF;
        PERFORM ledger.admin_audit(u.id, 'queue.review',
                                   coalesce('transaction:' || p_transaction_id, 'violation:' || p_violation_id),
                                   NULL, jsonb_build_object('outcome', 'reviewed', 'overdraft', v_overdraft,
                                                            'violations', to_jsonb(v_violations), 'reason', v_reason));
        RETURN 'reviewed';
    END IF;

    SELECT * INTO r FROM ledger.resolve(t.id, p_outcome, v_reason, 'admin:' || u.username);
    IF r.outcome = 'rejected' THEN
        PERFORM ledger.fail('invalid-transition',
                            format('transaction %s is %s: only TerminalConfirmUnknown and ExternalUnknown wait for an '
                                   'admin''s decision', t.id, t.state),
                            jsonb_build_object('field', 'outcome', 'state', t.state));
    END IF;
    PERFORM ledger.admin_audit(u.id, 'queue.resolve', 'transaction:' || t.id, jsonb_build_object('state', t.state),
                               jsonb_build_object('state', r.state, 'outcome', r.outcome, 'reason', v_reason));
    RETURN r.state;
END
$$;
COMMENT ON FUNCTION api.admin_queue_resolve IS
    'Decides a queue item: Committed or Aborted for an unknown outcome (an online top-up: Aborted only, the '
    'provider''s paid books it), reviewed for an overdraft or violation (privilege support, audited).';

CREATE OR REPLACE FUNCTION api.admin_queue_refund(p_token text, p_transaction_id bigint, p_reason text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Asks for the refund of an online payment the provider took that could not be booked (a provider-refund item of the
-- queue; privilege support, like every decision of the queue: it gives back exactly what the provider took and the
-- ledger never booked, so no balance changes), with a reason, audited: the checkout's refund is requested and the
-- relay's provider request reopened (topic 'provider'), which refunds the amount through the provider, keyed by the
-- checkout reference. A refund due or failed is requested; one requested or refunded already stays as it is (asking
-- twice refunds once, and writes no second audit row).
-- Returns the refund state after (requested, refunded); raises validation (reason, transaction_id), not-found (no
-- payment to refund).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'support');
    v_event bigint := ledger.admin_event_id();
    v_reason text := ledger.admin_reason(p_reason);
    t ledger.transaction;
    c ledger.external_checkout;
BEGIN
    IF p_transaction_id IS NULL THEN
        PERFORM ledger.fail('validation', 'name the transaction to refund', '{"field": "transaction_id"}');
    END IF;
    t := ledger.admin_transaction_of(v_event, p_transaction_id);
    SELECT * INTO c FROM ledger.external_checkout x WHERE x.transaction_id = t.id FOR UPDATE;
    IF c.refund_state IS NULL THEN
        PERFORM ledger.fail('not-found', format('transaction %s has no online payment to refund', t.id),
                            jsonb_build_object('transaction_id', t.id));
    ELSIF c.refund_state IN ('requested', 'refunded') THEN
        RETURN c.refund_state;
    ELSIF c.checkout_id IS NULL THEN
        PERFORM ledger.fail('validation', 'the provider''s checkout id is not known: refund it at the provider',
                            '{"field": "transaction_id"}');
    END IF;
    UPDATE ledger.external_checkout x
       SET refund_state = 'requested', refund_requested_by = u.username, refund_requested_at = now(), refund_error = NULL
     WHERE x.reference = c.reference;
    INSERT INTO ledger.outbox (topic, ordering_key, transaction_id) VALUES ('provider', c.reference, t.id)
    ON CONFLICT ON CONSTRAINT outbox_once
    DO UPDATE SET done_at = NULL, attempts = 0, retry_at = NULL, last_error = NULL;
    PERFORM ledger.enqueue_wakeup('provider');
    PERFORM ledger.admin_audit(u.id, 'queue.refund', 'transaction:' || t.id,
                               jsonb_build_object('refund', c.refund_state, 'error', c.refund_error),
                               jsonb_build_object('refund', 'requested', 'amount', t.amount, 'uid',
                                                  (SELECT g.uid FROM ledger.tag g WHERE g.id = t.tag_id),
                                                  'reference', c.reference, 'checkout_id', c.checkout_id,
                                                  'refund_reason', c.refund_reason, 'reason', v_reason));
    RETURN 'requested';
END
$$;
COMMENT ON FUNCTION api.admin_queue_refund IS
    'Asks for the refund through the provider of an online payment that could not be booked (privilege support, '
    'audited). Returns the refund state.';

-- ---------------------------------------------------------------- reports

CREATE OR REPLACE FUNCTION ledger.lines_in(p_event_id bigint, p_whole boolean, p_from timestamptz, p_to timestamptz,
                                           p_lo bigint, p_hi bigint)
RETURNS TABLE (account_id bigint, received bigint, paid bigint) LANGUAGE sql STABLE AS $$
-- Both sides of the booking lines of an event's transactions committed in [p_from, p_to) (ledger.committed_in with
-- p_lo, p_hi), or, when p_whole, of all its lines, read straight from the journal. Inlined into the caller's query.
-- Returns one row per line and side: the account and what it received or paid.
    SELECT x.account_id, x.received, x.paid
      FROM ledger.committed_in(p_event_id, p_from, p_to, p_lo, p_hi) t
      JOIN ledger.booking b ON b.transaction_id = t.id
     CROSS JOIN LATERAL (VALUES (b.debit_account_id, b.amount::bigint, 0::bigint),
                                (b.credit_account_id, 0::bigint, b.amount::bigint)) x(account_id, received, paid)
     WHERE NOT p_whole
    UNION ALL
    SELECT b.debit_account_id, b.amount::bigint, 0::bigint
      FROM ledger.booking b JOIN ledger.account a ON a.id = b.debit_account_id
     WHERE p_whole AND a.event_id = p_event_id
    UNION ALL
    SELECT b.credit_account_id, 0::bigint, b.amount::bigint
      FROM ledger.booking b JOIN ledger.account a ON a.id = b.credit_account_id
     WHERE p_whole AND a.event_id = p_event_id;
$$;

CREATE OR REPLACE FUNCTION api.admin_report(p_token text, p_name text, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (columns text[], rows jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A report of the event over the transactions committed in [p_from, p_to) (NULL: open), money in cents
-- (privilege view):
--   sales-per-merchant  merchant, sales (committed purchases), gross (their amounts), chargebacks, net
--   sales-per-product   product, vat_rate, quantity, gross (items as sold), returned (deposit returns)
--   sales-per-hour      hour (start, in the event's time zone), sales, gross (ledger.sales_hours)
--   vat                 vat_rate, vat_key, gross, net, tax: the sum of every receipt's own (ledger.receipt_lines_of)
--   topups              method, topups, amount, fees, credited (amount less fees)
--   trial-balance       kind, account, received, paid, balance of the booking lines (customers together; last row
--                       total, whose balance is 0)
--   settlement          merchant, sales (booked to it), chargebacks (booked from it), payable
-- Returns one row: the column names and the rows as a JSON array of arrays; raises not-found for another name,
-- validation (field to) when the window ends before it starts.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
    w record;
BEGIN
    IF p_from >= p_to THEN
        PERFORM ledger.fail('validation', 'the end must be after the start', '{"field": "to"}');
    END IF;
    w := ledger.commit_slice(v_event, p_from, p_to);
    CASE p_name
    WHEN 'sales-per-merchant' THEN
        columns := ARRAY['merchant', 'sales', 'gross', 'chargebacks', 'net'];
        SELECT coalesce(jsonb_agg(jsonb_build_array(m.name, coalesce(s.n, 0), coalesce(s.gross, 0), coalesce(s.back, 0),
                                                    coalesce(s.gross, 0) - coalesce(s.back, 0)) ORDER BY m.name), '[]')
          INTO rows
          FROM ledger.merchant m
          LEFT JOIN (SELECT t.other_account_id AS account_id,
                            count(*) FILTER (WHERE t.type = 'purchase') AS n,
                            sum(t.amount) FILTER (WHERE t.type = 'purchase') AS gross,
                            sum(t.amount) FILTER (WHERE t.type = 'chargeback') AS back
                       FROM ledger.committed_in(v_event, w.p_from, w.p_to, w.lo, w.hi) t
                      WHERE t.type IN ('purchase', 'chargeback')
                      GROUP BY t.other_account_id) s ON s.account_id = m.account_id
         WHERE m.event_id = v_event;
    WHEN 'sales-per-product' THEN
        columns := ARRAY['product', 'vat_rate', 'quantity', 'gross', 'returned'];
        SELECT coalesce(jsonb_agg(jsonb_build_array(s.name, s.vat_rate, s.quantity, s.gross, s.returned)
                                  ORDER BY s.gross DESC, s.name), '[]')
          INTO rows
          FROM (SELECT i.product_id, i.name, i.vat_rate,
                       coalesce(sum(i.quantity) FILTER (WHERE t.type = 'purchase'), 0) AS quantity,
                       coalesce(sum(i.quantity * i.unit_price) FILTER (WHERE t.type = 'purchase'), 0) AS gross,
                       coalesce(sum(i.quantity) FILTER (WHERE t.type = 'deposit_return'), 0) AS returned
                  FROM ledger.committed_in(v_event, w.p_from, w.p_to, w.lo, w.hi) t
                  JOIN ledger.item i ON i.transaction_id = t.id
                 WHERE t.type IN ('purchase', 'deposit_return')
                 GROUP BY i.product_id, i.name, i.vat_rate) s;
    WHEN 'sales-per-hour' THEN
        columns := ARRAY['hour', 'sales', 'gross'];
        SELECT coalesce(jsonb_agg(jsonb_build_array(h.hour, h.sales, h.gross) ORDER BY h.hour), '[]') INTO rows
          FROM ledger.sales_hours(v_event, p_from, p_to) h;
    WHEN 'vat' THEN
        -- The receipts' lines: their taxes are each receipt's tax per rate, split over its lines.
        columns := ARRAY['vat_rate', 'vat_key', 'gross', 'net', 'tax'];
        SELECT coalesce(jsonb_agg(jsonb_build_array(s.vat_rate, s.vat_key, s.gross, s.net, s.tax) ORDER BY s.vat_rate DESC), '[]')
          INTO rows
          FROM (SELECT l.vat_rate, l.vat_key, sum(l.gross)::bigint AS gross, sum(l.net)::bigint AS net,
                       sum(l.tax)::bigint AS tax
                  FROM ledger.receipt_lines_of(ARRAY(SELECT t.id FROM ledger.committed_in(v_event, w.p_from, w.p_to, w.lo, w.hi) t
                                                      WHERE ledger.is_receipt(t.type))) l
                 GROUP BY l.vat_rate, l.vat_key) s;
    WHEN 'topups' THEN
        columns := ARRAY['method', 'topups', 'amount', 'fees', 'credited'];
        SELECT coalesce(jsonb_agg(jsonb_build_array(s.method, s.n, s.amount, s.fees, s.amount - s.fees) ORDER BY s.method), '[]')
          INTO rows
          FROM (SELECT t.payment::text AS method, count(*) AS n, sum(t.amount)::bigint AS amount, sum(t.fee)::bigint AS fees
                  FROM ledger.committed_in(v_event, w.p_from, w.p_to, w.lo, w.hi) t
                 WHERE t.type = 'topup'
                 GROUP BY t.payment) s;
    WHEN 'trial-balance' THEN
        columns := ARRAY['kind', 'account', 'received', 'paid', 'balance'];
        WITH sides AS (SELECT * FROM ledger.lines_in(v_event, p_from IS NULL AND p_to IS NULL, w.p_from, w.p_to, w.lo, w.hi)),
        by_id AS (SELECT s.account_id, sum(s.received) AS received, sum(s.paid) AS paid FROM sides s GROUP BY s.account_id),
        per_account AS (
            SELECT a.kind::text AS kind, CASE WHEN a.kind = 'customer' THEN 'all tags' ELSE a.name END AS account,
                   sum(s.received)::bigint AS received, sum(s.paid)::bigint AS paid
              FROM by_id s JOIN ledger.account a ON a.id = s.account_id
             GROUP BY 1, 2)
        SELECT coalesce(jsonb_agg(x.r ORDER BY x.o, x.kind, x.account), '[]') INTO rows
          FROM (SELECT 0 AS o, p.kind, p.account,
                       jsonb_build_array(p.kind, p.account, p.received, p.paid, p.received - p.paid) AS r
                  FROM per_account p
                UNION ALL
                SELECT 1, 'total', NULL, jsonb_build_array('total', NULL, coalesce(sum(p.received), 0)::bigint,
                                                           coalesce(sum(p.paid), 0)::bigint,
                                                           coalesce(sum(p.received - p.paid), 0)::bigint)
                  FROM per_account p) x;
    WHEN 'settlement' THEN
        columns := ARRAY['merchant', 'sales', 'chargebacks', 'payable'];
        SELECT coalesce(jsonb_agg(jsonb_build_array(m.name, coalesce(s.received, 0), coalesce(s.paid, 0),
                                                    coalesce(s.received, 0) - coalesce(s.paid, 0)) ORDER BY m.name), '[]')
          INTO rows
          FROM ledger.merchant m
          LEFT JOIN (SELECT x.account_id, sum(x.received)::bigint AS received, sum(x.paid)::bigint AS paid
                       FROM ledger.lines_in(v_event, p_from IS NULL AND p_to IS NULL, w.p_from, w.p_to, w.lo, w.hi) x
                      WHERE x.account_id IN (SELECT k.account_id FROM ledger.merchant k WHERE k.event_id = v_event)
                      GROUP BY x.account_id) s ON s.account_id = m.account_id
         WHERE m.event_id = v_event;
    ELSE
        PERFORM ledger.fail('not-found', format('there is no report %L', p_name), '{"field": "name"}');
    END CASE;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.admin_report IS
    'A report (sales-per-merchant, sales-per-product, sales-per-hour, vat, topups, trial-balance, settlement) over a '
    'time window (privilege view).';

-- ---------------------------------------------------------------- fiscal status and closings

CREATE OR REPLACE FUNCTION api.admin_fiscal(p_token text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The fiscal state of the event (privilege view): the TSE (serial of the newest signature, its highest signature
-- counter and TSE transaction number, when it last signed), signing lag (api.outbox_lag), outages (newest 50) and
-- whether one is open, the tills with receipts not closed yet (api.open_cashpoints, with device and position), and
-- the closings (newest 100).
-- Returns {tse, signing, tse_outage, outages, open_cashpoints, closings}.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
    s ledger.tse_signature;
BEGIN
    SELECT * INTO s FROM ledger.tse_signature x ORDER BY x.transaction_id DESC LIMIT 1;
    RETURN jsonb_build_object(
        'tse', CASE WHEN s.tse_serial IS NOT NULL THEN
                   (SELECT jsonb_build_object('serial_number', s.tse_serial, 'signature_counter', max(x.signature_counter),
                                              'transaction_number', max(x.tse_tx_number), 'last_signed_at', s.signed_at)
                      FROM ledger.tse_signature x WHERE x.tse_serial = s.tse_serial) END,
        'signing', (SELECT jsonb_build_object('pending', l.pending, 'oldest_ms', l.oldest_ms) FROM api.outbox_lag('tse') l),
        'tse_outage', EXISTS (SELECT FROM ledger.tse_outage o WHERE o.ended_at IS NULL),
        'outages', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', o.id, 'started_at', o.started_at,
                                                                'ended_at', o.ended_at, 'cause', o.cause) ORDER BY o.id DESC), '[]')
                      FROM (SELECT * FROM ledger.tse_outage x ORDER BY x.id DESC LIMIT 50) o),
        'open_cashpoints', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                               'assignment_id', c.assignment_id, 'client_id', c.client_id,
                                               'transactions', c.transactions, 'device', a.device, 'position', p.name)
                                             ORDER BY c.assignment_id NULLS LAST), '[]')
                              FROM api.open_cashpoints(v_event) c
                              LEFT JOIN ledger.assignment a ON a.id = c.assignment_id
                              LEFT JOIN ledger.position p ON p.id = a.position_id),
        'closings', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                        'id', c.id, 'client_id', c.client_id, 'assignment_id', c.assignment_id,
                                        'z_nr', c.z_nr, 'closed_at', c.closed_at, 'transactions', c.transactions,
                                        'total', c.total, 'first_transaction_id', c.first_transaction_id,
                                        'last_transaction_id', c.last_transaction_id) ORDER BY c.id DESC), '[]')
                       FROM (SELECT * FROM ledger.cashpoint_closing x WHERE x.event_id = v_event
                              ORDER BY x.id DESC LIMIT 100) c));
END
$$;
COMMENT ON FUNCTION api.admin_fiscal IS 'TSE serial and counters, signing lag, outages, open tills and closings (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_close_cashpoint(p_token text, p_assignment_id bigint)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Closes a till (Kassenabschluss; privilege finance) through api.close_cashpoint: a terminal assignment, or the
-- backend's till when p_assignment_id is NULL; audited with the closing. Returns the closing id; raises not-found,
-- validation (no open receipts).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
    v_event bigint := ledger.admin_event_id();
    c record;
BEGIN
    SELECT * INTO c FROM api.close_cashpoint(v_event, p_assignment_id);
    PERFORM ledger.admin_audit(u.id, 'cashpoint.close', 'till:' || ledger.tse_client_id(p_assignment_id), NULL,
                               jsonb_build_object('closing_id', c.closing_id, 'z_nr', c.z_nr,
                                                  'transactions', c.transactions, 'total', c.total));
    RETURN c.closing_id;
END
$$;
COMMENT ON FUNCTION api.admin_close_cashpoint IS
    'Closes a till (Kassenabschluss) (privilege finance, audited). Returns the closing id.';

-- ---------------------------------------------------------------- the dashboard

CREATE OR REPLACE FUNCTION api.admin_dashboard(p_token text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The live dashboard of the event (privilege view), one call for every viewer: sales and top-ups (committed amounts)
-- per minute over the last 6 hours (every minute, 0 when quiet), revenue today (committed purchases since midnight in
-- the event's time zone, ledger.sales_hours), terminals seen in the last 5 minutes (assignments with a transaction
-- created then), signing lag (api.outbox_lag), open queue items per kind, whether a TSE outage is open.
-- Returns {at, series: [{minute, sales, topups}], revenue_today, terminals_seen_5min, signing_lag, queue_counts,
-- tse_outage}.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
    v_tz text;
    v_now timestamptz := date_trunc('minute', now());
    w record;
    v_series jsonb;
    v_seen integer;
    v_lo bigint;
BEGIN
    SELECT e.time_zone INTO v_tz FROM ledger.event e WHERE e.id = v_event;
    w := ledger.commit_slice(v_event, v_now - interval '359 minutes', NULL);
    SELECT jsonb_agg(jsonb_build_object('minute', m.m, 'sales', coalesce(s.sales, 0), 'topups', coalesce(s.topups, 0))
                     ORDER BY m.m)
      INTO v_series
      FROM generate_series(v_now - interval '359 minutes', v_now, interval '1 minute') m(m)
      LEFT JOIN (SELECT date_trunc('minute', t.committed_at) AS m,
                        sum(t.amount) FILTER (WHERE t.type = 'purchase')::bigint AS sales,
                        sum(t.amount) FILTER (WHERE t.type = 'topup')::bigint AS topups
                   FROM ledger.committed_in(v_event, w.p_from, w.p_to, w.lo, w.hi) t
                  WHERE t.type IN ('purchase', 'topup')
                  GROUP BY 1) s ON s.m = m.m;
    v_lo := coalesce(ledger.transaction_id_bound(now() - interval '5 minutes', false), 0);
    SELECT count(DISTINCT t.assignment_id) INTO v_seen
      FROM ledger.transaction t
     WHERE t.id >= v_lo AND t.created_at >= now() - interval '5 minutes' AND t.event_id = v_event;
    RETURN jsonb_build_object(
        'at', now(),
        'series', v_series,
        'revenue_today', (SELECT coalesce(sum(h.gross), 0)::bigint
                            FROM ledger.sales_hours(v_event, date_trunc('day', now(), v_tz), NULL) h),
        'terminals_seen_5min', v_seen,
        'signing_lag', (SELECT jsonb_build_object('pending', l.pending, 'oldest_ms', l.oldest_ms) FROM api.outbox_lag('tse') l),
        'queue_counts', (SELECT jsonb_object_agg(k.kind, coalesce(c.n, 0))
                           FROM unnest(ARRAY['terminal-confirm-unknown', 'external-unknown', 'provider-refund', 'overdraft',
                                             'refused-log-entry', 'implausible-offline-charge', 'violation']) k(kind)
                           LEFT JOIN (SELECT i.kind, count(*) AS n FROM ledger.admin_queue_items(v_event) i
                                       GROUP BY i.kind) c ON c.kind = k.kind),
        'tse_outage', EXISTS (SELECT FROM ledger.tse_outage o WHERE o.ended_at IS NULL));
END
$$;
COMMENT ON FUNCTION api.admin_dashboard IS
    'The live dashboard: sales and top-ups per minute (6 h), revenue today, terminals seen, signing lag, queue counts, '
    'TSE outage (privilege view).';
