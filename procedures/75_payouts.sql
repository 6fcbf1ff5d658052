SET LOCAL ROLE festpay_owner;

-- Payouts after the event. In the portal a visitor gives an IBAN (of a country the event allows), the account holder
-- and an e-mail address, and donates nothing, a part or everything (api.portal_payout_set). Finance makes payout runs
-- of the eligible customers (ledger.payout_candidates, the one eligibility rule) within a maximum number and sum; a
-- run secures each customer's money at once: a payout transaction (transfer + fee, to the payout account) and a
-- donation transaction (to the donation account), both Open -> ExternalPending and holding their amounts
-- (ledger.holds), so nothing of it can be spent meanwhile. The SEPA file is made from the run (api.admin_payout_export).
-- Done books both (ledger.conclude: payout <- customer, fee <- customer, donation <- customer; the payout is a receipt,
-- signed like any other) and blocks the tag; revoked aborts both and releases the money. A customer is in one open or
-- done run at most (the unique index payout_line_one_run_per_tag), and its bank data is locked meanwhile.
--
-- Lock order: run creation and donate-remaining take an advisory lock per event (one at a time), then the customer
-- accounts (ledger.lock_account's row lock) in account id order, then (run creation) the bank-data rows; the portal and
-- support lock a bank-data row only. Done and revoke lock the run row, then each customer's account, in id order.

-- ---------------------------------------------------------------- IBAN

CREATE OR REPLACE FUNCTION ledger.iban_length(p_country text)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
-- The length of an IBAN of a SEPA country (ISO 13616 registry).
-- Returns it, or NULL for a country outside SEPA (only the general format is checked then).
    SELECT CASE
        WHEN p_country IN ('NO') THEN 15
        WHEN p_country IN ('BE') THEN 16
        WHEN p_country IN ('DK', 'FI', 'NL') THEN 18
        WHEN p_country IN ('SI') THEN 19
        WHEN p_country IN ('AT', 'EE', 'LT', 'LU') THEN 20
        WHEN p_country IN ('CH', 'HR', 'LI', 'LV') THEN 21
        WHEN p_country IN ('BG', 'DE', 'GB', 'IE', 'VA') THEN 22
        WHEN p_country IN ('GI') THEN 23
        WHEN p_country IN ('AD', 'CZ', 'ES', 'RO', 'SE', 'SK') THEN 24
        WHEN p_country IN ('PT') THEN 25
        WHEN p_country IN ('IS') THEN 26
        WHEN p_country IN ('FR', 'GR', 'IT', 'MC', 'SM') THEN 27
        WHEN p_country IN ('CY', 'HU', 'PL') THEN 28
        WHEN p_country IN ('MT') THEN 31 END;
$$;

CREATE OR REPLACE FUNCTION ledger.iban_checksum_ok(p_iban text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
-- The ISO 7064 mod 97-10 check of an IBAN in its electronic form (upper-case letters and digits): the first four
-- characters moved to the end, letters as 10..35, the number modulo 97 must be 1. Returns true or false.
DECLARE
    v text := substr(p_iban, 5) || substr(p_iban, 1, 4);
    r integer := 0;
    c integer;
BEGIN
    FOR i IN 1 .. length(v) LOOP
        c := ascii(substr(v, i, 1));
        IF c BETWEEN 48 AND 57 THEN
            r := (r * 10 + c - 48) % 97;
        ELSE
            r := (r * 100 + c - 55) % 97;
        END IF;
    END LOOP;
    RETURN r = 1;
END
$$;

CREATE OR REPLACE FUNCTION ledger.iban_check(p_iban text, p_countries text[], p_field text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks an IBAN as a visitor or admin types it (spaces and case do not matter): two letters, two check digits, 11 to
-- 30 letters and digits, the length of its country (ledger.iban_length), the check digits (mod 97), and, unless
-- p_countries is NULL, a country of that list. Returns it in electronic form (no spaces, upper case); raises
-- validation naming the form field p_field.
DECLARE
    v text := upper(regexp_replace(coalesce(p_iban, ''), '\s', '', 'g'));
BEGIN
    IF v = '' THEN
        PERFORM ledger.fail('validation', 'enter the IBAN', jsonb_build_object('field', p_field));
    ELSIF v !~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$' THEN
        PERFORM ledger.fail('validation', 'this is no IBAN: two letters, two check digits, then 11 to 30 letters and digits',
                            jsonb_build_object('field', p_field));
    ELSIF length(v) <> coalesce(ledger.iban_length(left(v, 2)), length(v)) THEN
        PERFORM ledger.fail('validation', format('an IBAN of %s has %s characters, this one has %s', left(v, 2),
                                                 ledger.iban_length(left(v, 2)), length(v)),
                            jsonb_build_object('field', p_field));
    ELSIF NOT ledger.iban_checksum_ok(v) THEN
        PERFORM ledger.fail('validation', 'the IBAN''s check digits do not match: is there a typing error?',
                            jsonb_build_object('field', p_field));
    ELSIF p_countries IS NOT NULL AND NOT left(v, 2) = ANY (p_countries) THEN
        PERFORM ledger.fail('validation', format('payouts go to accounts in %s only, not %s',
                                                 coalesce(nullif(array_to_string(p_countries, ', '), ''), 'no country'),
                                                 left(v, 2)),
                            jsonb_build_object('field', p_field, 'countries', to_jsonb(p_countries)));
    END IF;
    RETURN v;
END
$$;

-- ---------------------------------------------------------------- who is eligible: the one rule

CREATE OR REPLACE FUNCTION ledger.payout_candidates(p_event_id bigint, p_tag_id bigint DEFAULT NULL)
RETURNS TABLE (tag_id bigint, uid text, account_id bigint, balance bigint, held bigint, has_bank boolean,
               blocked boolean, run_id bigint, run_state text, unresolved boolean, overdraft boolean, donation bigint,
               transfer bigint, fee bigint, eligible boolean, reasons text[], remaining boolean, entered_at timestamptz)
LANGUAGE sql STABLE AS $$
-- The payout situation of the event's customers (with p_tag_id: of that tag alone; else every tag with bank data or
-- a balance other than 0). The one rule: d = all ? balance : least(part, balance) (donated), transfer = balance - d -
-- fee with the event's payout fee charged only when the transfer is more than 0; eligible when the bank data is given,
-- support has not blocked the payout, the tag is in no open or done run, nothing of it is unresolved (a transaction
-- ReservePending, Reserve, TerminalConfirmUnknown, ExternalPending or ExternalUnknown), no overdraft (an unreviewed
-- ledger.overdraft row, or a balance below 0), balance > 0 and (transfer > 0 or d = balance). reasons names what
-- stands in the way (no-bank-data, blocked, unresolved, overdraft, below-fee, empty; in-run or done alone when in a
-- run). remaining: what api.admin_donate_remaining takes, a balance > 0 in no open run (in no run, or money that
-- reached the tag after its run was done: a chargeback, a transfer, a deposit return), nothing unresolved, no
-- overdraft, not blocked, and not eligible (an eligible customer waits for its payout).
-- Returns one row per tag (inlined into the caller's query).
    SELECT c.tag_id, c.uid, c.account_id, c.balance, c.held, c.has_bank, c.blocked, c.run_id, c.run_state,
           c.unresolved, c.overdraft, m.donation, m.transfer, m.fee, cardinality(r.reasons) = 0, r.reasons,
           c.balance > 0 AND c.run_state IS DISTINCT FROM 'open' AND NOT (c.unresolved OR c.overdraft OR c.blocked)
               AND cardinality(r.reasons) > 0,
           c.entered_at
      FROM (SELECT g.id AS tag_id, g.uid, a.id AS account_id, a.balance, a.held::bigint AS held,
                   coalesce(b.entered_at IS NOT NULL AND b.erased_at IS NULL, false) AS has_bank,
                   coalesce(b.blocked, false) AS blocked, b.donate, b.donation AS part, b.entered_at, e.payout_fee,
                   l.run_id, l.state AS run_state,
                   EXISTS (SELECT FROM ledger.transaction t
                            WHERE t.account_id = a.id AND t.state <> 'Committed'     -- transaction_unbooked_by_account
                              AND t.state IN ('ReservePending', 'Reserve', 'TerminalConfirmUnknown', 'ExternalPending',
                                              'ExternalUnknown')) AS unresolved,
                   a.balance < 0 OR EXISTS (SELECT FROM ledger.overdraft o
                                             WHERE o.account_id = a.id AND o.reviewed_at IS NULL) AS overdraft
              FROM ledger.tag g
              JOIN ledger.account a ON a.id = g.account_id
              JOIN ledger.event e ON e.id = g.event_id
              LEFT JOIN ledger.payout_bank b ON b.tag_id = g.id
              LEFT JOIN LATERAL (SELECT x.run_id, r.state FROM ledger.payout_line x
                                   JOIN ledger.payout_run r ON r.id = x.run_id
                                  WHERE x.tag_id = g.id AND NOT x.revoked) l ON true
             WHERE g.event_id = p_event_id
               AND (g.id = p_tag_id OR (p_tag_id IS NULL AND (b.tag_id IS NOT NULL OR a.balance <> 0)))) c
     CROSS JOIN LATERAL (SELECT CASE c.donate WHEN 'all' THEN greatest(c.balance, 0)
                                              WHEN 'part' THEN least(c.part, greatest(c.balance, 0))
                                              ELSE 0 END AS d) d
     CROSS JOIN LATERAL (SELECT d.d AS donation,
                                greatest(c.balance - d.d - c.payout_fee, 0) AS transfer,
                                CASE WHEN c.balance - d.d - c.payout_fee > 0 THEN c.payout_fee ELSE 0 END AS fee) m
     CROSS JOIN LATERAL (SELECT CASE c.run_state WHEN 'open' THEN ARRAY['in-run'] WHEN 'done' THEN ARRAY['done']
                                ELSE array_remove(ARRAY[
                                    CASE WHEN NOT c.has_bank THEN 'no-bank-data' END,
                                    CASE WHEN c.blocked THEN 'blocked' END,
                                    CASE WHEN c.unresolved THEN 'unresolved' END,
                                    CASE WHEN c.overdraft THEN 'overdraft' END,
                                    CASE WHEN c.balance > 0 AND m.transfer = 0 AND m.donation < c.balance THEN 'below-fee' END,
                                    CASE WHEN c.balance = 0 THEN 'empty' END], NULL) END AS reasons) r;
$$;

CREATE OR REPLACE FUNCTION ledger.payout_status(p_run_state text, p_has_bank boolean)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
-- Where a customer's payout stands, from its run's state and whether it gave bank data.
-- Returns in-run, done, requested or none.
    SELECT CASE p_run_state WHEN 'open' THEN 'in-run' WHEN 'done' THEN 'done'
                ELSE CASE WHEN p_has_bank THEN 'requested' ELSE 'none' END END;
$$;

CREATE OR REPLACE FUNCTION ledger.payout_bank_json(p_tag_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- A customer's bank data as the portal shows it (the IBAN in electronic form; NULLs once erased).
-- Returns {iban, holder, email, donate, donation, updated_at, erased_at}, or NULL when it gave none.
    SELECT jsonb_build_object('iban', b.iban, 'holder', b.holder, 'email', b.email, 'donate', b.donate,
                              'donation', b.donation, 'updated_at', b.updated_at, 'erased_at', b.erased_at)
      FROM ledger.payout_bank b WHERE b.tag_id = p_tag_id AND b.entered_at IS NOT NULL;
$$;

CREATE OR REPLACE FUNCTION ledger.payout_line_json(p_tag_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- The open or done payout run a customer is in, with its own amounts.
-- Returns {id, execution_date, amount (transfer), fee, donation}, or NULL when it is in none.
    SELECT jsonb_build_object('id', r.id, 'execution_date', r.execution_date, 'amount', l.amount, 'fee', l.fee,
                              'donation', l.donation)
      FROM ledger.payout_line l JOIN ledger.payout_run r ON r.id = l.run_id
     WHERE l.tag_id = p_tag_id AND NOT l.revoked;
$$;

CREATE OR REPLACE FUNCTION ledger.payout_customer_json(p_event_id bigint, p_tag_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- A customer's payout as the admin site shows it (api.admin_customer): its bank data (keys of the portal's, NULL when
-- none), whether support blocked the payout and why, status, eligibility and reasons, the estimate of what a run would
-- move now, and the run it is in. Returns one JSON object.
    SELECT coalesce(ledger.payout_bank_json(c.tag_id),
                    '{"iban": null, "holder": null, "email": null, "donate": null, "donation": null,
                      "updated_at": null, "erased_at": null}')
           || jsonb_build_object('blocked', c.blocked, 'blocked_reason', b.blocked_reason,
                                 'status', ledger.payout_status(c.run_state, c.has_bank), 'eligible', c.eligible,
                                 'reasons', to_jsonb(c.reasons),
                                 'estimate', jsonb_build_object('transfer', c.transfer, 'fee', c.fee, 'donation', c.donation),
                                 'run', ledger.payout_line_json(c.tag_id))
      FROM ledger.payout_candidates(p_event_id, p_tag_id) c
      LEFT JOIN ledger.payout_bank b ON b.tag_id = c.tag_id;
$$;

-- ---------------------------------------------------------------- the portal

CREATE OR REPLACE FUNCTION api.portal_payout(p_token text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The signed-in tag's payout page: balance, available, the event's payout fee, currency, countries and deadline, its
-- bank data, whether it is locked (in a run), status (none, requested, in-run, done), the run it is in, whether it is
-- eligible for the next run and what stands in the way (ledger.payout_candidates), and the estimate of what a run
-- would move now (transfer, fee, donation). Returns one JSON object; raises portal-unauthenticated.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
    e ledger.event;
    c record;
BEGIN
    SELECT * INTO e FROM ledger.event x WHERE x.id = g.event_id;
    SELECT * INTO c FROM ledger.payout_candidates(g.event_id, g.id);
    RETURN jsonb_build_object(
        'balance', c.balance, 'available', c.balance - c.held, 'fee', e.payout_fee, 'currency', e.currency,
        'countries', to_jsonb(e.payout_countries), 'bank', ledger.payout_bank_json(g.id),
        'locked', c.run_state IS NOT NULL, 'status', ledger.payout_status(c.run_state, c.has_bank),
        'run', ledger.payout_line_json(g.id), 'eligible', c.eligible, 'reasons', to_jsonb(c.reasons),
        'estimate', jsonb_build_object('transfer', c.transfer, 'fee', c.fee, 'donation', c.donation),
        'deadline', e.payout_deadline, 'deadline_passed', coalesce(e.payout_deadline <= now(), false));
END
$$;
COMMENT ON FUNCTION api.portal_payout IS
    'The signed-in tag''s payout: balance, fee, bank data, status, run, eligibility and reasons. Returns one JSON object.';

CREATE OR REPLACE FUNCTION api.portal_payout_set(p_token text, p_iban text, p_holder text, p_email text, p_donate text,
                                                 p_donation bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Saves the signed-in tag's payout request: IBAN (ledger.iban_check, a country of the event's payout_countries) and
-- account holder (1 to 70 characters; both may be left out when donating all, then both or neither), e-mail (always),
-- and the donation: none, part (p_donation cents, more than 0; a run caps it at the balance) or all. The bank-data row
-- is locked first; a tag in an open or done run changes nothing (its data is in the run). Audited as portal.payout
-- without the personal data. Returns nothing; raises portal-unauthenticated, payout-locked, validation (iban, holder,
-- email, donate, donation).
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
    e ledger.event;
    b ledger.payout_bank;
    v_donate text := lower(btrim(p_donate));
    v_email text := btrim(p_email);
    v_iban text := nullif(regexp_replace(coalesce(p_iban, ''), '\s', '', 'g'), '');
    v_holder text := nullif(btrim(regexp_replace(coalesce(p_holder, ''), '\s+', ' ', 'g')), '');
BEGIN
    SELECT * INTO e FROM ledger.event x WHERE x.id = g.event_id;
    IF v_donate IS NULL OR v_donate NOT IN ('none', 'part', 'all') THEN
        PERFORM ledger.fail('validation', 'choose what to donate: nothing, a part or everything', '{"field": "donate"}');
    END IF;
    IF v_donate = 'part' AND (p_donation IS NULL OR p_donation <= 0) THEN
        PERFORM ledger.fail('validation', format('enter the amount to donate, more than %s', ledger.admin_money(e.id, 0)),
                            '{"field": "donation"}');
    END IF;
    IF v_donate <> 'all' OR v_iban IS NOT NULL OR v_holder IS NOT NULL THEN
        v_iban := ledger.iban_check(v_iban, e.payout_countries, 'iban');
        IF v_holder IS NULL THEN
            PERFORM ledger.fail('validation', 'enter the account holder''s name', '{"field": "holder"}');
        ELSIF length(v_holder) > 70 OR v_holder ~ '[[:cntrl:]]' THEN
            PERFORM ledger.fail('validation', 'the account holder''s name has at most 70 characters, no control characters',
                                '{"field": "holder"}');
        END IF;
    END IF;
    IF coalesce(v_email, '') = '' THEN
        PERFORM ledger.fail('validation', 'enter your e-mail address', '{"field": "email"}');
    ELSIF length(v_email) > 254 OR v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' THEN
        PERFORM ledger.fail('validation', format('%s is no e-mail address', left(v_email, 100)), '{"field": "email"}');
    END IF;
    -- Lock the row (made first when missing): a run that takes this customer holds it until it commits, after which
    -- the run's line is seen here.
    INSERT INTO ledger.payout_bank (tag_id, event_id) VALUES (g.id, g.event_id) ON CONFLICT (tag_id) DO NOTHING;
    SELECT * INTO b FROM ledger.payout_bank x WHERE x.tag_id = g.id FOR UPDATE;
    IF EXISTS (SELECT FROM ledger.payout_line l WHERE l.tag_id = g.id AND NOT l.revoked) THEN
        PERFORM ledger.fail('payout-locked', 'your payout is in a payout run: the bank data cannot change now');
    END IF;
    UPDATE ledger.payout_bank x
       SET iban = v_iban, holder = v_holder, email = v_email, donate = v_donate,
           donation = CASE WHEN v_donate = 'part' THEN p_donation END,
           entered_at = coalesce(x.entered_at, now()), updated_at = now()
     WHERE x.tag_id = g.id;
    PERFORM ledger.admin_audit(NULL, 'portal.payout', 'tag:' || g.uid,
                               CASE WHEN b.entered_at IS NOT NULL THEN
                                   jsonb_build_object('donate', b.donate, 'donation', b.donation) END,
                               jsonb_build_object('donate', v_donate, 'donation', CASE WHEN v_donate = 'part' THEN p_donation END,
                                                  'iban_changed', b.iban IS DISTINCT FROM v_iban,
                                                  'holder_changed', b.holder IS DISTINCT FROM v_holder,
                                                  'email_changed', b.email IS DISTINCT FROM v_email, 'by', 'customer'));
END
$$;
COMMENT ON FUNCTION api.portal_payout_set IS
    'Saves the signed-in tag''s payout request (IBAN, holder, e-mail, donation); refused while it is in a payout run.';

-- ---------------------------------------------------------------- the admin site: runs

CREATE OR REPLACE FUNCTION ledger.payout_run_json(r ledger.payout_run)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- A payout run as the admin site lists it (who: the admin's username, NULL for a DBA).
-- Returns {id, state, created_at, created_by, execution_date, max_count, max_sum, count, transfers, fees, donations,
-- done_at, done_by, revoked_at, revoked_by, reason}.
    SELECT jsonb_build_object(
        'id', r.id, 'state', r.state, 'created_at', r.created_at,
        'created_by', (SELECT u.username FROM ledger.admin_user u WHERE u.id = r.created_by),
        'execution_date', r.execution_date, 'max_count', r.max_count, 'max_sum', r.max_sum, 'count', r.count,
        'transfers', r.transfers, 'fees', r.fees, 'donations', r.donations, 'done_at', r.done_at,
        'done_by', (SELECT u.username FROM ledger.admin_user u WHERE u.id = r.done_by),
        'revoked_at', r.revoked_at, 'revoked_by', (SELECT u.username FROM ledger.admin_user u WHERE u.id = r.revoked_by),
        'reason', r.reason);
$$;

CREATE OR REPLACE FUNCTION ledger.payout_run_of(p_event_id bigint, p_run_id bigint, p_lock boolean DEFAULT false)
RETURNS ledger.payout_run LANGUAGE plpgsql AS $$
-- A payout run of the event, locked FOR UPDATE when p_lock (done and revoke: one at a time per run).
-- Returns the row; raises not-found for an unknown run or one of another event.
DECLARE
    r ledger.payout_run;
BEGIN
    IF p_lock THEN
        SELECT * INTO r FROM ledger.payout_run x WHERE x.id = p_run_id AND x.event_id = p_event_id FOR UPDATE;
    ELSE
        SELECT * INTO r FROM ledger.payout_run x WHERE x.id = p_run_id AND x.event_id = p_event_id;
    END IF;
    IF r.id IS NULL THEN
        PERFORM ledger.fail('not-found', format('payout run %s does not exist', p_run_id), jsonb_build_object('run_id', p_run_id));
    END IF;
    RETURN r;
END
$$;

CREATE OR REPLACE FUNCTION ledger.payout_document(r ledger.payout_run)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- A payout run with everything its SEPA credit transfer file and CSV need: the run, its event, the currency, the debtor
-- account and one line per customer (holder, IBAN, e-mail: NULL once erased; amounts in cents; end-to-end id
-- FP-<run>-<line>).
-- Returns {run, event_id, currency, debtor: {name, iban, bic}, lines: [...]} with the lines in order.
    SELECT jsonb_build_object(
        'run', ledger.payout_run_json(r), 'event_id', r.event_id,
        'currency', (SELECT e.currency FROM ledger.event e WHERE e.id = r.event_id),
        'debtor', jsonb_build_object('name', r.debtor_name, 'iban', r.debtor_iban, 'bic', r.debtor_bic),
        'lines', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'line_no', l.line_no, 'uid', g.uid, 'holder', b.holder, 'iban', b.iban, 'email', b.email,
                             'amount', l.amount, 'fee', l.fee, 'donation', l.donation,
                             'end_to_end_id', format('FP-%s-%s', r.id, l.line_no),
                             'payout_transaction_id', l.payout_transaction_id,
                             'donation_transaction_id', l.donation_transaction_id) ORDER BY l.line_no), '[]')
                    FROM ledger.payout_line l
                    JOIN ledger.tag g ON g.id = l.tag_id
                    LEFT JOIN ledger.payout_bank b ON b.tag_id = l.tag_id
                   WHERE l.run_id = r.id));
$$;

CREATE OR REPLACE FUNCTION api.admin_payouts(p_token text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp
-- Its summary query over every customer is costed high enough to be JIT-compiled on each call, which takes ten times
-- longer than running it (1.2 s against 80 ms at 35,000 transactions, make bench section payout).
SET jit = off AS $$
-- The payouts page (privilege finance): fee, deadline and whether it passed, the customers eligible now (how many,
-- their transfers and donations), those waiting by reason (not in a run, ledger.payout_candidates), what
-- donate-remaining would take (money left on paid-out tags too), whether the festival's account is set, and every
-- run, newest first.
-- Returns one JSON object; raises admin-unauthenticated, admin-forbidden, not-found (no event).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
    v_event bigint := ledger.admin_event_id();
    e ledger.event;
    v jsonb;
BEGIN
    SELECT * INTO e FROM ledger.event x WHERE x.id = v_event;
    WITH c AS (SELECT * FROM ledger.payout_candidates(v_event))
    SELECT jsonb_build_object(
               'eligible', (SELECT jsonb_build_object('count', count(*), 'transfers', coalesce(sum(c.transfer), 0),
                                                      'donations', coalesce(sum(c.donation), 0))
                              FROM c WHERE c.eligible),
               'waiting', (SELECT coalesce(jsonb_object_agg(w.reason, w.n), '{}')
                             FROM (SELECT x.reason, count(*) AS n FROM c CROSS JOIN unnest(c.reasons) x(reason)
                                    WHERE NOT c.eligible AND c.run_state IS NULL GROUP BY x.reason) w),
               'remaining', (SELECT jsonb_build_object('count', count(*), 'sum', coalesce(sum(c.balance), 0))
                               FROM c WHERE c.remaining))
      INTO v;
    RETURN v || jsonb_build_object(
        'currency', e.currency, 'fee', e.payout_fee, 'deadline', e.payout_deadline,
        'deadline_passed', coalesce(e.payout_deadline <= now(), false),
        'debtor_ready', e.payout_debtor_name <> '' AND e.payout_debtor_iban <> '',
        'runs', (SELECT coalesce(jsonb_agg(ledger.payout_run_json(r) ORDER BY r.id DESC), '[]')
                   FROM ledger.payout_run r WHERE r.event_id = v_event));
END
$$;
COMMENT ON FUNCTION api.admin_payouts IS
    'The payouts page: eligible customers, waiting ones by reason, what donate-remaining takes, the runs (privilege finance).';

CREATE OR REPLACE FUNCTION ledger.payout_hold(p_event_id bigint, p_type ledger.tx_type, p_account_id bigint,
                                              p_other_account_id bigint, p_tag_id bigint, p_amount bigint, p_fee bigint,
                                              p_actor text, p_run_id bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Secures money of a payout run (the caller holds the customer's lock): a p_type transaction Open (holding p_amount;
-- the account's held amount is raised by the caller) -> ExternalPending, paid online when a payout (no till).
-- Returns its id.
DECLARE
    v_id bigint := ledger.new_transaction(p_event_id, p_type, 'Open', p_account_id, p_other_account_id, p_amount,
                                          p_fee => p_fee, p_held => p_amount, p_tag_id => p_tag_id,
                                          p_payment => CASE WHEN p_type = 'payout' THEN 'online' END::ledger.payment_method);
BEGIN
    IF ledger.set_state(v_id, 'ExternalPending', p_actor, jsonb_build_object('payout_run', p_run_id)) <> 'changed' THEN
        PERFORM ledger.fail('invalid-transition', format('transaction %s did not become ExternalPending', v_id));
    END IF;
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION api.admin_payout_run_create(p_token text, p_max_count integer, p_max_sum bigint,
                                                       p_execution_date date)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Makes a payout run (privilege finance): the eligible customers (ledger.payout_candidates), oldest bank data first,
-- until p_max_count customers or p_max_sum cents of transfers would be passed; each customer's money is secured at
-- once (ledger.payout_hold: payout = transfer + fee, donation), so available drops to 0. One run is made at a time per
-- event (advisory lock); the candidates' accounts, then their bank-data rows, are locked before anything is decided, so
-- a concurrent run, purchase or bank-data change waits or is seen. Audited (payout.create).
-- Returns the run id; raises validation (max_count, max_sum, execution_date: before today in the event's time zone,
-- payout_debtor_iban: the festival's account not set), payout-not-eligible (nobody fits).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
    v_event bigint := ledger.admin_event_id();
    v_actor text := 'admin:' || u.username;
    e ledger.event;
    v_locked bigint[];
    s record;
    r ledger.payout_run;
    v_payout_account bigint;
    v_donation_account bigint;
    v_payout bigint;
    v_donation bigint;
    v_available bigint;
BEGIN
    SELECT * INTO e FROM ledger.event x WHERE x.id = v_event;
    IF p_max_count IS NULL OR p_max_count < 1 THEN
        PERFORM ledger.fail('validation', 'the maximum number of payouts must be 1 or more', '{"field": "max_count"}');
    END IF;
    IF p_max_sum IS NULL OR p_max_sum < 1 THEN
        PERFORM ledger.fail('validation', format('the maximum sum must be more than %s', ledger.admin_money(v_event, 0)),
                            '{"field": "max_sum"}');
    END IF;
    IF p_execution_date IS NULL THEN
        PERFORM ledger.fail('validation', 'enter the execution date', '{"field": "execution_date"}');
    ELSIF p_execution_date < (now() AT TIME ZONE e.time_zone)::date THEN
        PERFORM ledger.fail('validation', format('the execution date %s is in the past', p_execution_date),
                            '{"field": "execution_date"}');
    END IF;
    IF e.payout_debtor_name = '' OR e.payout_debtor_iban = '' THEN
        PERFORM ledger.fail('validation', 'set the festival''s account (holder and IBAN) in the event settings first',
                            '{"field": "payout_debtor_iban"}');
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('festpay payout run ' || v_event, 0));
    SELECT array_agg(x.tag_id) INTO v_locked
      FROM (SELECT b.tag_id FROM ledger.payout_bank b
              JOIN ledger.tag g ON g.id = b.tag_id
              JOIN ledger.account a ON a.id = g.account_id
             WHERE b.event_id = v_event AND b.entered_at IS NOT NULL AND b.erased_at IS NULL AND NOT b.blocked
               AND NOT EXISTS (SELECT FROM ledger.payout_line l WHERE l.tag_id = b.tag_id AND NOT l.revoked)
             ORDER BY a.id
               FOR NO KEY UPDATE OF a FOR SHARE OF b) x;
    -- Under the locks: who is eligible, in line order, as long as both limits hold (transfers are never negative, so
    -- the rows within the limits are the first ones).
    SELECT array_agg(x.tag_id ORDER BY x.n) AS tags, array_agg(x.account_id ORDER BY x.n) AS accounts,
           array_agg(x.transfer ORDER BY x.n) AS transfers, array_agg(x.fee ORDER BY x.n) AS fees,
           array_agg(x.donation ORDER BY x.n) AS donations, count(*)::integer AS n,
           coalesce(sum(x.transfer), 0)::bigint AS transfer_sum, coalesce(sum(x.fee), 0)::bigint AS fee_sum,
           coalesce(sum(x.donation), 0)::bigint AS donation_sum
      INTO s
      FROM (SELECT c.*, row_number() OVER w AS n, sum(c.transfer) OVER w AS upto
              FROM ledger.payout_candidates(v_event) c
             WHERE c.eligible AND c.tag_id = ANY (v_locked)
            WINDOW w AS (ORDER BY c.entered_at, c.tag_id)) x
     WHERE x.n <= p_max_count AND x.upto <= p_max_sum;
    IF s.n = 0 THEN
        PERFORM ledger.fail('payout-not-eligible',
                            CASE WHEN EXISTS (SELECT FROM ledger.payout_candidates(v_event) c
                                               WHERE c.eligible AND c.tag_id = ANY (v_locked))
                                 THEN format('the first eligible payout is above the maximum sum of %s',
                                             ledger.admin_money(v_event, p_max_sum))
                                 ELSE 'no customer is eligible for a payout now' END);
    END IF;
    INSERT INTO ledger.payout_run (event_id, execution_date, max_count, max_sum, count, transfers, fees, donations,
                                   debtor_name, debtor_iban, debtor_bic, created_by)
    VALUES (v_event, p_execution_date, p_max_count, p_max_sum, s.n, s.transfer_sum, s.fee_sum, s.donation_sum,
            e.payout_debtor_name, e.payout_debtor_iban, e.payout_debtor_bic, u.id)
    RETURNING * INTO r;
    v_payout_account := ledger.system_account(v_event, 'payout', 'payout');
    v_donation_account := ledger.system_account(v_event, 'donation', 'donation');
    FOR i IN 1 .. s.n LOOP
        v_payout := NULL;
        v_donation := NULL;
        IF s.transfers[i] > 0 THEN
            v_payout := ledger.payout_hold(v_event, 'payout', s.accounts[i], v_payout_account, s.tags[i],
                                           s.transfers[i] + s.fees[i], s.fees[i], v_actor, r.id);
        END IF;
        IF s.donations[i] > 0 THEN
            v_donation := ledger.payout_hold(v_event, 'donation', s.accounts[i], v_donation_account, s.tags[i],
                                             s.donations[i], 0, v_actor, r.id);
        END IF;
        UPDATE ledger.account SET held = held + s.transfers[i] + s.fees[i] + s.donations[i] WHERE id = s.accounts[i]
        RETURNING balance - held INTO v_available;
        IF v_available < 0 THEN                            -- cannot be: eligible means nothing else holds its money
            PERFORM ledger.fail('insufficient-balance', format('account %s would be short by %s', s.accounts[i], -v_available),
                                jsonb_build_object('available', v_available));
        END IF;
        INSERT INTO ledger.payout_line (run_id, line_no, tag_id, amount, fee, donation, payout_transaction_id,
                                        donation_transaction_id)
        VALUES (r.id, i, s.tags[i], s.transfers[i], s.fees[i], s.donations[i], v_payout, v_donation);
    END LOOP;
    PERFORM ledger.admin_audit(u.id, 'payout.create', 'payout-run:' || r.id, NULL, ledger.payout_run_json(r));
    RETURN r.id;
END
$$;
COMMENT ON FUNCTION api.admin_payout_run_create IS
    'Makes a payout run of eligible customers within a maximum count and sum, securing their money (privilege '
    'finance, audited). Returns the run id.';

CREATE OR REPLACE FUNCTION api.admin_payout_run(p_token text, p_run_id bigint)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A payout run of the event with its lines (privilege finance): ledger.payout_document.
-- Returns {run, currency, debtor, lines}; raises admin-unauthenticated, admin-forbidden, not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
BEGIN
    RETURN ledger.payout_document(ledger.payout_run_of(ledger.admin_event_id(), p_run_id));
END
$$;
COMMENT ON FUNCTION api.admin_payout_run IS 'A payout run with its lines and the debtor account (privilege finance).';

CREATE OR REPLACE FUNCTION api.admin_payout_export(p_token text, p_run_id bigint)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The document of a payout run for its SEPA credit transfer file and CSV (privilege finance): ledger.payout_document,
-- audited (payout.export) as a download of bank data. An open run's file goes to the bank, a done run's is kept for
-- the records; a revoked run has no file (its money was released: a bank must never get it).
-- Returns {run, event_id, currency, debtor, lines}; raises admin-unauthenticated, admin-forbidden, not-found,
-- payout-run-closed (revoked).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
    r ledger.payout_run := ledger.payout_run_of(ledger.admin_event_id(), p_run_id);
BEGIN
    IF r.state = 'revoked' THEN
        PERFORM ledger.fail('payout-run-closed', format('payout run %s is revoked: it has no bank file', r.id),
                            jsonb_build_object('run_id', r.id, 'state', r.state));
    END IF;
    PERFORM ledger.admin_audit(u.id, 'payout.export', 'payout-run:' || r.id, NULL,
                               jsonb_build_object('state', r.state, 'count', r.count, 'transfers', r.transfers));
    RETURN ledger.payout_document(r);
END
$$;
COMMENT ON FUNCTION api.admin_payout_export IS
    'A payout run''s lines for the SEPA file and CSV download, not of a revoked run (privilege finance, audited as '
    'payout.export).';

CREATE OR REPLACE FUNCTION ledger.payout_close(p_run_id bigint, p_to ledger.tx_state, p_actor text)
RETURNS void LANGUAGE plpgsql AS $$
-- Moves the payout and donation transactions of every line of an open run to p_to (Committed: booked; Aborted: the
-- money released) under each customer's lock, in account id order. Each must still be ExternalPending.
-- Returns nothing; raises invalid-transition otherwise.
DECLARE
    l record;
    t ledger.transaction;
BEGIN
    FOR l IN SELECT x.payout_transaction_id, x.donation_transaction_id, g.account_id
               FROM ledger.payout_line x JOIN ledger.tag g ON g.id = x.tag_id
              WHERE x.run_id = p_run_id ORDER BY g.account_id LOOP
        PERFORM ledger.lock_account(l.account_id);
        FOR t IN SELECT * FROM ledger.transaction x
                  WHERE x.id IN (l.payout_transaction_id, l.donation_transaction_id) ORDER BY x.id LOOP
            IF t.state <> 'ExternalPending'
               OR ledger.set_state(t, p_to, p_actor, jsonb_build_object('payout_run', p_run_id)) <> 'changed' THEN
                PERFORM ledger.fail('invalid-transition',
                                    format('transaction %s of payout run %s is %s, not ExternalPending', t.id, p_run_id, t.state),
                                    jsonb_build_object('transaction_id', t.id, 'state', t.state));
            END IF;
        END LOOP;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION api.admin_payout_run_revoke(p_token text, p_run_id bigint, p_reason text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Revokes an open payout run (privilege finance), with a reason: its transactions are Aborted (the money released) and
-- its customers are free again (eligible for another run, bank data unlocked). Audited (payout.revoke).
-- Returns nothing; raises validation (reason), not-found, payout-run-closed (done or revoked already).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
    v_reason text := ledger.admin_reason(p_reason);
    r ledger.payout_run := ledger.payout_run_of(ledger.admin_event_id(), p_run_id, true);
BEGIN
    IF r.state <> 'open' THEN
        PERFORM ledger.fail('payout-run-closed', format('payout run %s is %s', r.id, r.state),
                            jsonb_build_object('run_id', r.id, 'state', r.state));
    END IF;
    PERFORM ledger.payout_close(r.id, 'Aborted', 'admin:' || u.username);
    UPDATE ledger.payout_line SET revoked = true WHERE run_id = r.id;
    UPDATE ledger.payout_run SET state = 'revoked', revoked_at = now(), revoked_by = u.id, reason = v_reason
     WHERE id = r.id;
    PERFORM ledger.admin_audit(u.id, 'payout.revoke', 'payout-run:' || r.id, jsonb_build_object('state', r.state),
                               jsonb_build_object('state', 'revoked', 'reason', v_reason));
END
$$;
COMMENT ON FUNCTION api.admin_payout_run_revoke IS
    'Revokes an open payout run: its money is released, its customers freed (privilege finance, audited).';

CREATE OR REPLACE FUNCTION api.admin_payout_run_done(p_token text, p_run_id bigint)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Marks an open payout run done once its transfers are sent (privilege finance): its transactions are Committed and
-- booked (payout <- customer, fee <- customer, donation <- customer; the payout is a receipt and queued for signing),
-- and each tag is blocked (ledger.admin_tag_block: audited customer.block, reason 'paid out in run N'), so it spends
-- nothing more. Audited (payout.done).
-- Returns {count, transfers, fees, donations}; raises not-found, payout-run-closed (done or revoked already).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
    v_event bigint := ledger.admin_event_id();
    r ledger.payout_run := ledger.payout_run_of(v_event, p_run_id, true);
BEGIN
    IF r.state <> 'open' THEN
        PERFORM ledger.fail('payout-run-closed', format('payout run %s is %s', r.id, r.state),
                            jsonb_build_object('run_id', r.id, 'state', r.state));
    END IF;
    PERFORM ledger.payout_close(r.id, 'Committed', 'admin:' || u.username);
    PERFORM ledger.admin_tag_block(u, t, true, format('paid out in run %s', r.id))
       FROM ledger.payout_line l JOIN ledger.tag t ON t.id = l.tag_id
      WHERE l.run_id = r.id AND t.status <> 'blocked' ORDER BY l.line_no;
    UPDATE ledger.payout_run SET state = 'done', done_at = now(), done_by = u.id WHERE id = r.id;
    PERFORM ledger.admin_audit(u.id, 'payout.done', 'payout-run:' || r.id, jsonb_build_object('state', r.state),
                               jsonb_build_object('state', 'done', 'count', r.count, 'transfers', r.transfers,
                                                  'fees', r.fees, 'donations', r.donations));
    RETURN jsonb_build_object('count', r.count, 'transfers', r.transfers, 'fees', r.fees, 'donations', r.donations);
END
$$;
COMMENT ON FUNCTION api.admin_payout_run_done IS
    'Marks a payout run done: books its payouts, fees and donations and blocks its tags (privilege finance, audited). '
    'Returns count, transfers, fees, donations.';

-- ---------------------------------------------------------------- the admin site: support, after the deadline, erasure

CREATE OR REPLACE FUNCTION api.admin_payout_block(p_token text, p_uid text, p_blocked boolean, p_reason text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Blocks a customer's payout (privilege support), with a reason: no run takes it (it can still spend and enter bank
-- data), or unblocks it. The bank-data row is locked first (made when missing); a customer in a run cannot be blocked.
-- Audited (payout.block, payout.unblock). Returns nothing; raises validation (uid, blocked, reason), not-found,
-- payout-locked.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'support');
    v_event bigint := ledger.admin_event_id();
    v_reason text := ledger.admin_reason(p_reason);
    v_tag ledger.tag;
    b ledger.payout_bank;
BEGIN
    IF p_blocked IS NULL THEN
        PERFORM ledger.fail('validation', 'say whether to block or unblock the payout', '{"field": "blocked"}');
    END IF;
    v_tag := ledger.find_tag(v_event, ledger.admin_uid(p_uid, 'uid'));
    IF p_blocked THEN
        INSERT INTO ledger.payout_bank (tag_id, event_id) VALUES (v_tag.id, v_event) ON CONFLICT (tag_id) DO NOTHING;
    END IF;
    SELECT * INTO b FROM ledger.payout_bank x WHERE x.tag_id = v_tag.id FOR UPDATE;
    IF p_blocked AND EXISTS (SELECT FROM ledger.payout_line l WHERE l.tag_id = v_tag.id AND NOT l.revoked) THEN
        PERFORM ledger.fail('payout-locked', format('tag %s is in a payout run: revoke the run first', v_tag.uid),
                            jsonb_build_object('field', 'blocked'));
    END IF;
    UPDATE ledger.payout_bank SET blocked = p_blocked, blocked_reason = CASE WHEN p_blocked THEN v_reason END
     WHERE tag_id = v_tag.id;
    PERFORM ledger.admin_audit(u.id, CASE WHEN p_blocked THEN 'payout.block' ELSE 'payout.unblock' END,
                               'tag:' || v_tag.uid, jsonb_build_object('blocked', coalesce(b.blocked, false)),
                               jsonb_build_object('blocked', p_blocked, 'reason', v_reason));
END
$$;
COMMENT ON FUNCTION api.admin_payout_block IS
    'Blocks or unblocks a customer''s payout, with a reason (privilege support, audited).';

CREATE OR REPLACE FUNCTION api.admin_donate_remaining(p_token text, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- After the event's payout deadline (privilege finance), with a reason: every customer that ledger.payout_candidates
-- calls remaining (a balance > 0 in no open run: in no run, or reached after its run was done; nothing unresolved, no
-- overdraft, payout not blocked, not eligible for a payout) donates its whole available balance: one Committed
-- donation each (donation <- customer). One run or donation at a time per event (advisory lock), the accounts locked
-- in id order first. Audited once (payout.donate-remaining).
-- Returns {count, sum}; raises validation (reason), payout-deadline-not-reached.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'finance');
    v_event bigint := ledger.admin_event_id();
    v_reason text := ledger.admin_reason(p_reason);
    e ledger.event;
    v_locked bigint[];
    v_account bigint;
    v_tx bigint;
    c record;
    n integer := 0;
    v_sum bigint := 0;
BEGIN
    SELECT * INTO e FROM ledger.event x WHERE x.id = v_event;
    IF e.payout_deadline IS NULL OR e.payout_deadline > now() THEN
        PERFORM ledger.fail('payout-deadline-not-reached',
                            CASE WHEN e.payout_deadline IS NULL THEN 'the event has no payout deadline'
                                 ELSE format('the payout deadline is %s',
                                             to_char(e.payout_deadline AT TIME ZONE e.time_zone, 'YYYY-MM-DD HH24:MI')) END,
                            jsonb_build_object('deadline', e.payout_deadline));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('festpay payout run ' || v_event, 0));
    SELECT array_agg(x.tag_id) INTO v_locked
      FROM (SELECT g.id AS tag_id FROM ledger.tag g JOIN ledger.account a ON a.id = g.account_id
             WHERE g.event_id = v_event AND a.balance > 0
             ORDER BY a.id
               FOR NO KEY UPDATE OF a) x;
    v_account := ledger.system_account(v_event, 'donation', 'donation');
    FOR c IN SELECT * FROM ledger.payout_candidates(v_event) x
              WHERE x.remaining AND x.tag_id = ANY (v_locked) ORDER BY x.account_id LOOP
        v_tx := ledger.new_transaction(v_event, 'donation', 'Committed', c.account_id, v_account, c.balance - c.held,
                                       p_tag_id => c.tag_id);
        PERFORM ledger.book(t, false) FROM ledger.transaction t WHERE t.id = v_tx;
        n := n + 1;
        v_sum := v_sum + c.balance - c.held;
    END LOOP;
    PERFORM ledger.admin_audit(u.id, 'payout.donate-remaining', 'event:' || v_event, NULL,
                               jsonb_build_object('count', n, 'sum', v_sum, 'reason', v_reason));
    RETURN jsonb_build_object('count', n, 'sum', v_sum);
END
$$;
COMMENT ON FUNCTION api.admin_donate_remaining IS
    'After the payout deadline: donates every remaining balance not paid out (privilege finance, audited once). '
    'Returns count and sum.';

CREATE OR REPLACE FUNCTION api.erase_personal_data(p_token text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Erases the personal data (IBAN, account holder, e-mail) of the event's customers whose payout run is done for longer
-- than the event's payout_retention (privilege users); their bank-data rows stay (tag, donation choice, times, erased_at)
-- and so do their runs, lines and bookings. Audited once (payout.erase, with the tags).
-- Returns how many customers were erased; raises admin-unauthenticated, admin-forbidden.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'users');
    v_event bigint := ledger.admin_event_id();
    v_uids text[];
BEGIN
    WITH erased AS (
        UPDATE ledger.payout_bank b SET iban = NULL, holder = NULL, email = NULL, erased_at = now()
          FROM ledger.payout_line l
          JOIN ledger.payout_run r ON r.id = l.run_id
          JOIN ledger.event e ON e.id = r.event_id
         WHERE l.tag_id = b.tag_id AND NOT l.revoked AND r.state = 'done' AND r.done_at + e.payout_retention <= now()
           AND b.event_id = v_event AND b.erased_at IS NULL
        RETURNING b.tag_id)
    SELECT coalesce(array_agg(g.uid ORDER BY g.uid), '{}') INTO v_uids FROM erased x JOIN ledger.tag g ON g.id = x.tag_id;
    PERFORM ledger.admin_audit(u.id, 'payout.erase', 'event:' || v_event, NULL,
                               jsonb_build_object('count', cardinality(v_uids), 'uids', to_jsonb(v_uids)));
    RETURN cardinality(v_uids);
END
$$;
COMMENT ON FUNCTION api.erase_personal_data IS
    'Erases IBAN, holder and e-mail of customers paid out longer ago than the retention, keeping the bookings '
    '(privilege users, audited). Returns how many.';
