SET LOCAL ROLE festpay_owner;

-- The customer portal's sign-in and read pages. A visitor signs in with a tag's UID and PIN (the
-- bcrypt hash of ledger.tag.pin_hash, set by the tag import) in the event the admin site runs (ledger.admin_event_id);
-- the session rules are the admin site's (procedures/70_admin_auth.sql: ledger.session_token, ledger.token_hash,
-- ledger.session_valid, ledger.sign_in_locked). Every portal api function but the sign-in takes the session token first
-- and passes it to ledger.portal_authorize, which answers with the signed-in tag: a visitor sees that tag's data only.
--
-- A blocked tag still signs in: its owner (who blocked a lost wristband, or whom support blocked) must still see the
-- balance and, later, ask for the payout; blocking stops spending, not reading. Its status is in api.portal_whoami.

CREATE OR REPLACE FUNCTION ledger.portal_authorize(p_token text)
RETURNS ledger.tag LANGUAGE plpgsql AS $$
-- The one check of every portal function: the session of p_token is valid (ledger.session_valid). Touches the
-- session's last_seen_at (skipped while another call of the same session holds its row, and where
-- ledger.session_may_touch says no).
-- Returns the session's tag; raises portal-unauthenticated.
DECLARE
    s ledger.portal_session;
    g ledger.tag;
BEGIN
    SELECT * INTO s FROM ledger.portal_session WHERE token_hash = ledger.token_hash(p_token);
    IF FOUND AND ledger.session_valid(s.created_at, s.last_seen_at, s.revoked_at) THEN
        SELECT * INTO g FROM ledger.tag WHERE id = s.tag_id;
    END IF;
    IF g.id IS NULL THEN
        PERFORM ledger.fail('portal-unauthenticated', 'sign in again: the session is missing, expired or revoked');
    END IF;
    IF ledger.session_may_touch() THEN
        UPDATE ledger.portal_session SET last_seen_at = now()
         WHERE id = (SELECT x.id FROM ledger.portal_session x WHERE x.id = s.id FOR NO KEY UPDATE SKIP LOCKED);
    END IF;
    RETURN g;
END
$$;

CREATE OR REPLACE FUNCTION api.portal_sign_in(p_uid text, p_pin text, p_client text DEFAULT NULL)
RETURNS TABLE (outcome text, token text, csrf_token text, uid text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Signs a visitor in with a tag of the newest event (ledger.admin_event_id) and its PIN: a new session with a new
-- token and CSRF token. Refused alike (outcome 'refused', nothing else) for an unknown or malformed UID, a tag without
-- a PIN, a wrong PIN and a locked tag: five wrong PINs of a tag within 15 minutes lock its portal sign-in for 15
-- minutes (ledger.sign_in_locked). Every attempt spends one bcrypt hash, known tag or not. A wrong PIN is recorded
-- (ledger.portal_sign_in_failure), so the answer is a row, never an error. A blocked tag signs in (see above).
-- Returns one row: outcome 'ok' with token, csrf_token and the tag's uid, or 'refused' with NULLs; raises not-found
-- before there is any event.
DECLARE
    g ledger.tag;
    v_pin text := left(coalesce(p_pin, ''), 100);
    v_uid text;
    v_token text;
BEGIN
    outcome := 'refused';
    -- Anything that is no UID (ledger.normalize_uid refuses it) simply finds no tag.
    BEGIN
        v_uid := ledger.normalize_uid(p_uid);
    EXCEPTION WHEN SQLSTATE 'FP001' THEN
        v_uid := NULL;
    END;
    SELECT * INTO g FROM ledger.tag x WHERE x.event_id = ledger.admin_event_id() AND x.uid = v_uid;
    IF NOT FOUND OR g.pin_hash IS NULL THEN
        PERFORM extensions.crypt(v_pin, extensions.gen_salt('bf', 8));     -- as long as a tag's PIN takes
        RETURN NEXT;
        RETURN;
    END IF;
    -- One sign-in of a tag at a time, so concurrent guesses count (without locking the tag row purchases update).
    PERFORM pg_advisory_xact_lock(hashtextextended('festpay portal sign-in ' || g.id, 0));
    IF ledger.sign_in_locked(ARRAY(SELECT f.at FROM ledger.portal_sign_in_failure f WHERE f.tag_id = g.id
                                    ORDER BY f.at DESC LIMIT 5)) THEN
        PERFORM extensions.crypt(v_pin, g.pin_hash);                        -- not counted while locked
        RETURN NEXT;
        RETURN;
    END IF;
    IF extensions.crypt(v_pin, g.pin_hash) IS DISTINCT FROM g.pin_hash THEN
        INSERT INTO ledger.portal_sign_in_failure (tag_id) VALUES (g.id);
        RETURN NEXT;
        RETURN;
    END IF;
    DELETE FROM ledger.portal_sign_in_failure f WHERE f.tag_id = g.id;
    DELETE FROM ledger.portal_session s WHERE s.tag_id = g.id AND s.created_at <= now() - interval '12 hours';
    v_token := ledger.session_token();
    INSERT INTO ledger.portal_session (tag_id, token_hash, csrf_token, client)
    VALUES (g.id, ledger.token_hash(v_token), ledger.session_token(), left(p_client, 200))
    RETURNING portal_session.csrf_token INTO csrf_token;
    outcome := 'ok'; token := v_token; uid := g.uid;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.portal_sign_in IS
    'Signs a visitor in with a tag''s UID and PIN. Returns outcome ok with a new session token, CSRF token and the UID, '
    'or refused (unknown tag, no PIN, wrong PIN or locked alike).';

CREATE OR REPLACE FUNCTION api.portal_sign_out(p_token text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Signs out: revokes the portal session of p_token. An unknown, expired or revoked token is no error.
-- Returns nothing.
    UPDATE ledger.portal_session SET revoked_at = now()
     WHERE token_hash = ledger.token_hash(p_token) AND revoked_at IS NULL;
$$;
COMMENT ON FUNCTION api.portal_sign_out IS 'Signs a visitor out: revokes the session of a token (no error for an unknown one).';

CREATE OR REPLACE FUNCTION api.portal_whoami(p_token text)
RETURNS TABLE (uid text, status text, csrf_token text, currency text, time_zone text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Which tag is signed in with p_token: its UID and status (new, active, blocked), the session's CSRF token, and its
-- event's currency and time zone.
-- Returns one row; raises portal-unauthenticated.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    uid := g.uid; status := g.status::text;
    SELECT s.csrf_token INTO csrf_token FROM ledger.portal_session s WHERE s.token_hash = ledger.token_hash(p_token);
    SELECT e.currency, e.time_zone INTO currency, time_zone FROM ledger.event e WHERE e.id = g.event_id;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.portal_whoami IS
    'The signed-in tag (UID, status), the session''s CSRF token, and the currency and time zone of its event.';

CREATE OR REPLACE FUNCTION api.portal_balance(p_token text)
RETURNS TABLE (balance bigint, held bigint, available bigint, pending_topups bigint, paid_out boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The signed-in tag's money in cents: balance, held (reserved by open purchases and by a payout run under way),
-- available (balance - held), the online top-ups whose outcome is not yet known (Open, ExternalPending,
-- ExternalUnknown: pending, never failed), and paid_out: the tag is in a payout run that is done (which closed it).
-- Returns one row; raises portal-unauthenticated.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    SELECT a.balance, a.held, a.balance - a.held INTO balance, held, available FROM ledger.account a WHERE a.id = g.account_id;
    SELECT coalesce(sum(t.amount), 0)::bigint INTO pending_topups FROM ledger.transaction t
     WHERE t.account_id = g.account_id AND t.state <> 'Committed'      -- index transaction_unbooked_by_account
       AND t.type = 'topup' AND t.state IN ('Open', 'ExternalPending', 'ExternalUnknown');
    paid_out := EXISTS (SELECT FROM ledger.payout_line l JOIN ledger.payout_run r ON r.id = l.run_id
                         WHERE l.tag_id = g.id AND NOT l.revoked AND r.state = 'done');
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.portal_balance IS
    'The signed-in tag''s balance, held, available and pending online top-ups, in cents, and whether it is paid out.';

CREATE OR REPLACE FUNCTION api.portal_topup_limits(p_token text)
RETURNS TABLE (currency text, min_topup bigint, max_topup bigint, fee bigint, max_balance bigint, most bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The limits of an online top-up of the signed-in tag, as api.external_topup_create checks them (ledger.check_topup):
-- the event's currency, smallest and largest top-up and online top-up fee (taken from the amount) in cents, the
-- highest balance, and most: the largest top-up the tag's balance allows now (the largest top-up, or less near the
-- highest balance; below min_topup when none is possible).
-- Returns one row; raises portal-unauthenticated.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    SELECT e.currency, e.min_topup, e.max_topup, ledger.topup_fee(e.id, 'online'), e.max_balance
      INTO currency, min_topup, max_topup, fee, max_balance
      FROM ledger.event e WHERE e.id = g.event_id;
    SELECT least(max_topup, max_balance - a.balance + fee) INTO most FROM ledger.account a WHERE a.id = g.account_id;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.portal_topup_limits IS
    'The signed-in tag''s online top-up limits: currency, smallest and largest top-up, fee, highest balance, and the '
    'largest top-up its balance allows now, in cents.';

CREATE OR REPLACE FUNCTION api.portal_history(p_token text, p_before_id bigint DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS TABLE (transaction_id bigint, booked_at timestamptz, type text, counterparty text, merchant text,
               amount bigint, balance_after bigint, receipt boolean, items jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The signed-in tag's history: its statement (api.customer_statement: the booking lines on its account, signed from
-- its side, with the running balance) one row per transaction, newest first, p_limit (1 to 200) rows with ids below
-- p_before_id. amount is what the transaction moved on the balance (fee included), balance_after the balance after
-- it, counterparty the other side of its first line, receipt whether api.portal_receipt shows one, items as sold.
-- Returns the rows; raises portal-unauthenticated.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    RETURN QUERY
    SELECT s.tid, s.at, s.typ, s.cp, m.name, s.amt, s.after,
           t.state = 'Committed' AND ledger.is_receipt(t.type),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('name', i.name, 'quantity', i.quantity,
                                                         'unit_price', i.unit_price, 'vat_rate', i.vat_rate,
                                                         'returnable', i.returnable) ORDER BY i.line_no), '[]')
              FROM ledger.item i WHERE i.transaction_id = s.tid)
      FROM (SELECT c.transaction_id AS tid, max(c.booked_at) AS at, min(c.type) AS typ,
                   (array_agg(c.counterparty ORDER BY c.n))[1] AS cp, sum(c.amount)::bigint AS amt,
                   (array_agg(c.balance_after ORDER BY c.n DESC))[1] AS after
              FROM api.customer_statement(g.event_id, g.uid) WITH ORDINALITY
                   AS c(transaction_id, booked_at, type, counterparty, amount, balance_after, n)
             WHERE c.transaction_id < coalesce(p_before_id, 9223372036854775807)
             GROUP BY c.transaction_id) s
      JOIN ledger.transaction t ON t.id = s.tid
      LEFT JOIN ledger.merchant m ON m.account_id = t.other_account_id
     ORDER BY s.tid DESC
     LIMIT least(greatest(coalesce(p_limit, 50), 1), 200);
END
$$;
COMMENT ON FUNCTION api.portal_history IS
    'The signed-in tag''s transactions (its statement, one row each) with items, newest first, keyset by id.';

CREATE OR REPLACE FUNCTION api.portal_receipt(p_token text, p_transaction_id bigint)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The receipt of one of the signed-in tag's own transactions, as api.receipt makes it. Another tag's transaction is
-- not-found with the very same answer as a missing one, so the page tells nothing about other tags.
-- Returns the receipt document; raises portal-unauthenticated, not-found (also for one that is no committed receipt).
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    IF NOT EXISTS (SELECT FROM ledger.transaction t WHERE t.id = p_transaction_id AND t.account_id = g.account_id) THEN
        PERFORM ledger.fail('not-found', format('transaction %s does not exist', p_transaction_id),
                            jsonb_build_object('transaction_id', p_transaction_id));
    END IF;
    RETURN api.receipt(p_transaction_id);
END
$$;
COMMENT ON FUNCTION api.portal_receipt IS
    'The receipt (api.receipt) of a committed transaction of the signed-in tag; another tag''s is not-found.';

CREATE OR REPLACE FUNCTION api.portal_block(p_token text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Blocks the signed-in tag at once (a lost wristband), through api.set_tag_blocked (the rule api.block_tag and the
-- admin site use); audited (ledger.admin_audit, action portal.block, no admin user) with the status before and after.
-- Blocking a blocked tag again changes nothing and writes no audit row. Only support unblocks.
-- Returns the tag's status after ('blocked'); raises portal-unauthenticated.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
    v_status text;
BEGIN
    IF g.status = 'blocked' THEN
        RETURN 'blocked';
    END IF;
    v_status := api.set_tag_blocked(g.event_id, g.uid, true);
    PERFORM ledger.admin_audit(NULL, 'portal.block', 'tag:' || g.uid, jsonb_build_object('status', g.status),
                               jsonb_build_object('status', v_status, 'by', 'customer'));
    RETURN v_status;
END
$$;
COMMENT ON FUNCTION api.portal_block IS
    'Blocks the signed-in tag (lost wristband) at once, audited as portal.block. Returns the status (blocked).';

CREATE OR REPLACE FUNCTION api.portal_data(p_token text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Everything the system keeps about the signed-in tag, for a download (GDPR Art. 15): the tag (UID, status, since),
-- its money, its transactions with items (api.portal_history, all of them), its portal sessions (times and client,
-- never a token or hash), its recorded failed sign-ins (times) and its payout (bank data, ledger.payout_bank_json; the
-- run it is in; retention_days, how long after the run is done the bank data is kept before it is erased, the event's
-- payout_retention in whole days rounded up). Nothing of any other tag.
-- Returns one jsonb document; raises portal-unauthenticated.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
    v_transactions jsonb := '[]';
    v_page jsonb;
    v_before bigint;
BEGIN
    LOOP                                                                -- every page of the history, 200 at a time
        SELECT coalesce(jsonb_agg(to_jsonb(h) ORDER BY h.transaction_id DESC), '[]'), min(h.transaction_id)
          INTO v_page, v_before FROM api.portal_history(p_token, v_before, 200) h;
        v_transactions := v_transactions || v_page;
        EXIT WHEN jsonb_array_length(v_page) < 200;
    END LOOP;
    RETURN jsonb_build_object(
        'exported_at', now(),
        'tag', jsonb_build_object('uid', g.uid, 'status', g.status, 'since', g.created_at, 'has_pin', g.pin_hash IS NOT NULL),
        'money', (SELECT to_jsonb(b) FROM api.portal_balance(p_token) b),
        'transactions', v_transactions,
        'sessions', (SELECT coalesce(jsonb_agg(jsonb_build_object('created_at', s.created_at, 'last_seen_at', s.last_seen_at,
                                                                  'revoked_at', s.revoked_at, 'client', s.client)
                                               ORDER BY s.id), '[]')
                       FROM ledger.portal_session s WHERE s.tag_id = g.id),
        'failed_sign_ins', (SELECT coalesce(jsonb_agg(f.at ORDER BY f.at), '[]')
                              FROM ledger.portal_sign_in_failure f WHERE f.tag_id = g.id),
        'payout', jsonb_build_object('bank', ledger.payout_bank_json(g.id), 'run', ledger.payout_line_json(g.id),
                                     'retention_days', (SELECT ceil(extract(epoch FROM e.payout_retention) / 86400)::integer
                                                          FROM ledger.event e WHERE e.id = g.event_id)));
END
$$;
COMMENT ON FUNCTION api.portal_data IS
    'All data kept about the signed-in tag (tag, money, transactions with items, sessions, failed sign-ins, payout) as '
    'one jsonb document.';
