SET LOCAL ROLE festpay_owner;

-- Cash-point closings (Kassenabschluss) and the rows of the DSFinV-K export (SPEC 8). A closing takes every committed
-- receipt of one till not closed yet and gives it the till's next Z number; the export reads closed receipts only.

CREATE OR REPLACE FUNCTION ledger.open_receipts(p_event_id bigint)
RETURNS SETOF ledger.transaction LANGUAGE sql STABLE AS $$
-- The receipts of an event that no cash-point closing covers yet: committed transactions that are receipts.
-- Returns the transaction rows (inlined into the caller's query).
    SELECT t.* FROM ledger.transaction t
     WHERE t.event_id = p_event_id AND t.state = 'Committed' AND ledger.is_receipt(t.type)
       AND NOT EXISTS (SELECT FROM ledger.cashpoint_closing_transaction x WHERE x.transaction_id = t.id);
$$;

CREATE OR REPLACE FUNCTION api.close_cashpoint(p_event_id bigint, p_assignment_id bigint DEFAULT NULL,
                                               OUT closing_id bigint, OUT z_nr integer, OUT transactions integer,
                                               OUT total bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Closes a till (a terminal assignment, or the backend when p_assignment_id is NULL): every committed receipt of the
-- event at that till not closed yet, under the till's next Z number (one closing at a time per till: advisory lock).
-- Returns the closing, its Z number, how many receipts and their total; raises not-found, validation when none is open.
DECLARE
    v_client text := ledger.tse_client_id(p_assignment_id);
BEGIN
    IF NOT EXISTS (SELECT FROM ledger.event e WHERE e.id = p_event_id) THEN
        PERFORM ledger.fail('not-found', format('no event %s', p_event_id));
    END IF;
    IF p_assignment_id IS NOT NULL
       AND NOT EXISTS (SELECT FROM ledger.assignment a WHERE a.id = p_assignment_id AND a.event_id = p_event_id) THEN
        PERFORM ledger.fail('not-found', format('no till %s in event %s', p_assignment_id, p_event_id),
                            jsonb_build_object('assignment_id', p_assignment_id));
    END IF;
    -- One closing at a time per till (client id): the Z number and the receipts it takes are decided under the lock,
    -- in one statement (one snapshot), so the closing's count and total are those of the receipts it links.
    PERFORM pg_advisory_xact_lock(hashtextextended('cashpoint-closing:' || v_client, 0));
    WITH open AS (
        SELECT t.id, (SELECT sum(l.gross) FROM ledger.receipt_lines(t.id) l) AS amount
          FROM ledger.open_receipts(p_event_id) t
         WHERE t.assignment_id IS NOT DISTINCT FROM p_assignment_id),
    agg AS (SELECT count(*)::integer AS n, sum(o.amount)::bigint AS s, min(o.id) AS f, max(o.id) AS l FROM open o),
    closing AS (
        INSERT INTO ledger.cashpoint_closing AS c (event_id, client_id, assignment_id, z_nr, first_transaction_id,
                                                   last_transaction_id, transactions, total)
        SELECT p_event_id, v_client, p_assignment_id,
               (SELECT coalesce(max(z.z_nr), 0) + 1 FROM ledger.cashpoint_closing z WHERE z.client_id = v_client),
               a.f, a.l, a.n, a.s
          FROM agg a WHERE a.n > 0
        RETURNING c.id, c.z_nr, c.transactions, c.total),
    links AS (
        INSERT INTO ledger.cashpoint_closing_transaction (transaction_id, closing_id)
        SELECT o.id, k.id FROM open o CROSS JOIN closing k)
    SELECT k.id, k.z_nr, k.transactions, k.total INTO closing_id, z_nr, transactions, total FROM closing k;
    IF closing_id IS NULL THEN
        PERFORM ledger.fail('validation', format('till %s has no open receipts to close', v_client),
                            jsonb_build_object('client_id', v_client));
    END IF;
END
$$;
COMMENT ON FUNCTION api.close_cashpoint IS
    'Closes a till (Kassenabschluss): its open committed receipts get the next Z number. Returns closing_id, z_nr, transactions, total.';

CREATE OR REPLACE FUNCTION api.open_cashpoints(p_event_id bigint)
RETURNS TABLE (assignment_id bigint, client_id text, transactions bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The tills of an event that have committed receipts no closing covers yet (assignment_id NULL: the backend).
-- Returns one row per till with the number of open receipts.
    SELECT t.assignment_id, ledger.tse_client_id(t.assignment_id), count(*)
      FROM ledger.open_receipts(p_event_id) t
     GROUP BY t.assignment_id ORDER BY t.assignment_id NULLS LAST;
$$;
COMMENT ON FUNCTION api.open_cashpoints IS 'Tills of an event with committed receipts not closed yet. Returns assignment_id, client_id, transactions.';

CREATE OR REPLACE FUNCTION api.events()
RETURNS TABLE (id bigint, name text) LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The events, for a DBA's command line (festpay registration-code, tse verify, export).
-- Returns id and name in id order.
    SELECT e.id, e.name FROM ledger.event e ORDER BY e.id;
$$;
COMMENT ON FUNCTION api.events IS 'Every event''s id and name. Returns rows in id order.';

CREATE OR REPLACE FUNCTION api.dsfinvk_event(p_event_id bigint)
RETURNS TABLE (name text, currency text, time_zone text, seller jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The master data of a DSFinV-K export: the event's name, currency, time zone and seller (ledger.seller).
-- Returns one row, none for an unknown event.
    SELECT e.name, e.currency, e.time_zone, ledger.seller(e.id) FROM ledger.event e WHERE e.id = p_event_id;
$$;
COMMENT ON FUNCTION api.dsfinvk_event IS 'Name, currency, time zone and seller of an event for the DSFinV-K export.';

CREATE OR REPLACE FUNCTION api.dsfinvk_lines(p_closing_ids bigint[])
RETURNS TABLE (closing_id bigint, transaction_id bigint, line_no integer, gv_typ text, gv_name text, article text,
               quantity integer, unit_price bigint, vat_key integer, vat_rate numeric, gross bigint, net bigint, tax bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The receipt lines (DSFinV-K Bonpos, Bonpos_USt) of the receipts the given closings cover: ledger.receipt_lines_of with
-- their business case (GV_TYP, GV_NAME; sources in python_gateway/dsfinvk.py). Returns them in closing, transaction
-- and line order.
    SELECT c.closing_id, t.id, l.line_no,
           CASE WHEN l.kind = 'fee' THEN 'Umsatz'
                WHEN t.type = 'topup' THEN 'MehrzweckgutscheinKauf'
                WHEN t.type = 'deposit_return' THEN 'PfandRueckzahlung'
                WHEN l.kind = 'deposit' THEN 'Pfand'
                WHEN t.type IN ('purchase', 'chargeback') THEN 'Umsatz'
                ELSE 'Auszahlung' END,
           CASE WHEN l.kind = 'fee' AND t.type = 'topup' THEN 'Gebuehr Aufladung'
                WHEN l.kind = 'fee' THEN 'Gebuehr Auszahlung'
                WHEN t.type = 'topup' THEN 'Aufladung Guthaben (Mehrzweckgutschein), ' || ledger.payment_name(t.type, t.payment)
                WHEN t.type IN ('purchase', 'deposit_return') AND t.payment IS NULL THEN 'MehrzweckgutscheinEinloesung'
                WHEN t.type = 'purchase' THEN 'Verkauf, ' || ledger.payment_name(t.type, t.payment)
                WHEN t.type = 'chargeback' THEN 'Rueckbuchung (Gutschrift auf Mehrzweckgutschein)'
                WHEN t.type = 'refund' THEN 'Auszahlung Restguthaben Mehrzweckgutschein (Bar)'
                WHEN t.type = 'payout' THEN 'Auszahlung Restguthaben Mehrzweckgutschein (Ueberweisung)'
                ELSE t.type::text END,
           l.name, l.quantity, l.unit_price, l.vat_key, l.vat_rate, l.gross, l.net, l.tax
      FROM ledger.cashpoint_closing_transaction c
      JOIN ledger.transaction t ON t.id = c.transaction_id
      JOIN ledger.receipt_lines_of(ARRAY(SELECT x.transaction_id FROM ledger.cashpoint_closing_transaction x
                                          WHERE x.closing_id = ANY (p_closing_ids))) l ON l.transaction_id = t.id
     WHERE c.closing_id = ANY (p_closing_ids)
     ORDER BY c.closing_id, t.id, l.line_no;
$$;
COMMENT ON FUNCTION api.dsfinvk_lines IS 'DSFinV-K receipt lines (business case, VAT key, gross/net/tax) of closed receipts. Returns rows.';

CREATE OR REPLACE FUNCTION api.dsfinvk_receipts(p_closing_ids bigint[])
RETURNS TABLE (closing_id bigint, transaction_id bigint, type text, terminal_tx_number bigint, started_at timestamptz,
               ended_at timestamptz, total bigint, payment_type text, payment_name text, vat jsonb, tse_serial text,
               tse_tx_number bigint, signature_counter bigint, tse_start timestamptz, tse_end timestamptz,
               process_type text, process_data text, signature text, public_key text, algorithm text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The receipts (DSFinV-K Bonkopf, Bonkopf_USt, Bonkopf_Zahlarten) the given closings cover: total (money into the
-- till positive), payment type and name, sums per VAT key (vat_key, gross, net, tax of ledger.receipt_lines_of) and
-- the TSE signature (NULL fields while unsigned). Returns them in closing and transaction order.
    WITH covered AS (
        SELECT c.closing_id, c.transaction_id FROM ledger.cashpoint_closing_transaction c
         WHERE c.closing_id = ANY (p_closing_ids)),
    per_key AS (
        SELECT l.transaction_id, l.vat_key, sum(l.gross)::bigint AS gross, sum(l.net)::bigint AS net,
               sum(l.tax)::bigint AS tax
          FROM ledger.receipt_lines_of(ARRAY(SELECT x.transaction_id FROM covered x)) l
         GROUP BY l.transaction_id, l.vat_key, l.vat_rate),
    per_receipt AS (
        SELECT k.transaction_id, sum(k.gross)::bigint AS total,
               jsonb_agg(jsonb_build_object('vat_key', k.vat_key, 'gross', k.gross, 'net', k.net, 'tax', k.tax)
                         ORDER BY k.vat_key) AS vat
          FROM per_key k GROUP BY k.transaction_id)
    SELECT c.closing_id, t.id, t.type::text, t.terminal_tx_number, t.created_at, t.committed_at, r.total,
           ledger.payment_type(t.payment), ledger.payment_name(t.type, t.payment), r.vat,
           s.tse_serial, s.tse_tx_number, s.signature_counter, s.start_time, s.log_time, s.process_type, s.process_data,
           translate(encode(s.signature, 'base64'), E'\n', ''), translate(encode(s.public_key, 'base64'), E'\n', ''),
           s.algorithm
      FROM covered c
      JOIN ledger.transaction t ON t.id = c.transaction_id
      JOIN per_receipt r ON r.transaction_id = t.id
      LEFT JOIN ledger.tse_signature s ON s.transaction_id = t.id
     ORDER BY c.closing_id, t.id;
$$;
COMMENT ON FUNCTION api.dsfinvk_receipts IS 'DSFinV-K receipt heads (total, payment, VAT sums, TSE signature) of closed receipts. Returns rows.';

CREATE OR REPLACE FUNCTION api.dsfinvk_closings(p_event_id bigint, p_first date DEFAULT NULL, p_last date DEFAULT NULL)
RETURNS TABLE (closing_id bigint, client_id text, assignment_id bigint, device text, z_nr integer, closed_at timestamptz,
               first_transaction_id bigint, last_transaction_id bigint, payments jsonb, business_cases jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The cash-point closings of an event closed between p_first and p_last (local dates, inclusive; NULL: open), each
-- with its sums per payment (Z_Zahlart: type, name, amount) and per business case and VAT key (Z_GV_Typ: gv_typ,
-- gv_name, vat_key, gross, net, tax) over the lines of ledger.receipt_lines_of. Returns them per till in Z order.
    SELECT c.id, c.client_id, c.assignment_id, a.device, c.z_nr, c.closed_at, c.first_transaction_id,
           c.last_transaction_id,
           (SELECT coalesce(jsonb_agg(jsonb_build_object('type', p.type, 'name', p.name, 'amount', p.amount)
                                      ORDER BY p.type, p.name), '[]')
              FROM (SELECT r.payment_type AS type, r.payment_name AS name, sum(r.total)::bigint AS amount
                      FROM api.dsfinvk_receipts(ARRAY[c.id]) r GROUP BY 1, 2) p),
           (SELECT coalesce(jsonb_agg(jsonb_build_object('gv_typ', g.gv_typ, 'gv_name', g.gv_name, 'vat_key', g.vat_key,
                                                         'gross', g.gross, 'net', g.net, 'tax', g.tax)
                                      ORDER BY g.gv_typ, g.gv_name, g.vat_key), '[]')
              FROM (SELECT l.gv_typ, l.gv_name, l.vat_key, sum(l.gross)::bigint AS gross, sum(l.net)::bigint AS net,
                           sum(l.tax)::bigint AS tax
                      FROM api.dsfinvk_lines(ARRAY[c.id]) l GROUP BY 1, 2, 3) g)
      FROM ledger.cashpoint_closing c
      JOIN ledger.event e ON e.id = c.event_id
      LEFT JOIN ledger.assignment a ON a.id = c.assignment_id
     WHERE c.event_id = p_event_id
       AND (p_first IS NULL OR (c.closed_at AT TIME ZONE e.time_zone)::date >= p_first)
       AND (p_last IS NULL OR (c.closed_at AT TIME ZONE e.time_zone)::date <= p_last)
     ORDER BY c.client_id, c.z_nr;
$$;
COMMENT ON FUNCTION api.dsfinvk_closings IS
    'DSFinV-K closings of an event in a date range with their sums per payment and per business case. Returns rows.';

CREATE OR REPLACE FUNCTION api.tse_signatures(p_event_id bigint DEFAULT NULL)
RETURNS TABLE (transaction_id bigint, state text, tse_serial text, client_id text, process_type text, process_data text,
               tse_tx_number bigint, signature_counter bigint, start_unix bigint, log_unix bigint,
               whole_second boolean, algorithm text, signature bytea, public_key bytea, late boolean,
               expected_client_id text, expected_process_data text, expected_error text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Every stored TSE signature (of one event, or all) beside what the ledger says it must sign today: the till's client
-- id and the process data of ledger.tse_process_data (or why it cannot be made), for `festpay tse verify`.
-- Returns one row per signature in transaction order.
DECLARE
    r record;
BEGIN
    FOR r IN SELECT s.*, t.state AS tx_state, t.assignment_id FROM ledger.tse_signature s
               JOIN ledger.transaction t ON t.id = s.transaction_id
              WHERE p_event_id IS NULL OR t.event_id = p_event_id ORDER BY s.transaction_id LOOP
        transaction_id := r.transaction_id; state := r.tx_state; tse_serial := r.tse_serial;
        client_id := r.client_id; process_type := r.process_type; process_data := r.process_data;
        tse_tx_number := r.tse_tx_number; signature_counter := r.signature_counter;
        start_unix := extract(epoch FROM r.start_time)::bigint; log_unix := extract(epoch FROM r.log_time)::bigint;
        whole_second := r.log_time = to_timestamp(extract(epoch FROM r.log_time)::bigint);
        algorithm := r.algorithm; signature := r.signature; public_key := r.public_key; late := r.late;
        expected_client_id := ledger.tse_client_id(r.assignment_id);
        BEGIN
            expected_process_data := ledger.tse_process_data(r.transaction_id);
            expected_error := NULL;
        EXCEPTION WHEN SQLSTATE 'FP001' OR check_violation THEN
            expected_process_data := NULL;
            expected_error := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION api.tse_signatures IS
    'Stored TSE signatures beside the client id and process data the ledger gives today. Returns rows.';

CREATE OR REPLACE FUNCTION api.tse_unsigned(p_event_id bigint DEFAULT NULL)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- How many committed receipts (of one event, or all) still wait for their TSE signature.
-- Returns the count.
    SELECT count(*) FROM ledger.outbox o JOIN ledger.transaction t ON t.id = o.transaction_id
     WHERE o.topic = 'tse' AND o.done_at IS NULL AND (p_event_id IS NULL OR t.event_id = p_event_id);
$$;
COMMENT ON FUNCTION api.tse_unsigned IS 'Receipts still waiting for their TSE signature. Returns the count.';

-- The admin site's DSFinV-K export: the same rows, for a session whose role has the finance privilege.

CREATE OR REPLACE FUNCTION api.admin_dsfinvk_event(p_token text, p_event_id bigint)
RETURNS TABLE (name text, currency text, time_zone text, seller jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- api.dsfinvk_event for an admin session with the finance privilege.
-- Returns its row; raises admin-unauthenticated or admin-forbidden.
BEGIN
    PERFORM ledger.admin_authorize(p_token, 'finance');
    RETURN QUERY SELECT * FROM api.dsfinvk_event(p_event_id);
END
$$;
COMMENT ON FUNCTION api.admin_dsfinvk_event IS 'api.dsfinvk_event for a finance session.';

CREATE OR REPLACE FUNCTION api.admin_dsfinvk_closings(p_token text, p_event_id bigint, p_first date DEFAULT NULL,
                                                      p_last date DEFAULT NULL)
RETURNS TABLE (closing_id bigint, client_id text, assignment_id bigint, device text, z_nr integer, closed_at timestamptz,
               first_transaction_id bigint, last_transaction_id bigint, payments jsonb, business_cases jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- api.dsfinvk_closings for an admin session with the finance privilege.
-- Returns its rows; raises admin-unauthenticated or admin-forbidden.
BEGIN
    PERFORM ledger.admin_authorize(p_token, 'finance');
    RETURN QUERY SELECT * FROM api.dsfinvk_closings(p_event_id, p_first, p_last);
END
$$;
COMMENT ON FUNCTION api.admin_dsfinvk_closings IS 'api.dsfinvk_closings for a finance session.';

CREATE OR REPLACE FUNCTION api.admin_dsfinvk_lines(p_token text, p_closing_ids bigint[])
RETURNS TABLE (closing_id bigint, transaction_id bigint, line_no integer, gv_typ text, gv_name text, article text,
               quantity integer, unit_price bigint, vat_key integer, vat_rate numeric, gross bigint, net bigint, tax bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- api.dsfinvk_lines for an admin session with the finance privilege.
-- Returns its rows; raises admin-unauthenticated or admin-forbidden.
BEGIN
    PERFORM ledger.admin_authorize(p_token, 'finance');
    RETURN QUERY SELECT * FROM api.dsfinvk_lines(p_closing_ids);
END
$$;
COMMENT ON FUNCTION api.admin_dsfinvk_lines IS 'api.dsfinvk_lines for a finance session.';

CREATE OR REPLACE FUNCTION api.admin_dsfinvk_receipts(p_token text, p_closing_ids bigint[])
RETURNS TABLE (closing_id bigint, transaction_id bigint, type text, terminal_tx_number bigint, started_at timestamptz,
               ended_at timestamptz, total bigint, payment_type text, payment_name text, vat jsonb, tse_serial text,
               tse_tx_number bigint, signature_counter bigint, tse_start timestamptz, tse_end timestamptz,
               process_type text, process_data text, signature text, public_key text, algorithm text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- api.dsfinvk_receipts for an admin session with the finance privilege.
-- Returns its rows; raises admin-unauthenticated or admin-forbidden.
BEGIN
    PERFORM ledger.admin_authorize(p_token, 'finance');
    RETURN QUERY SELECT * FROM api.dsfinvk_receipts(p_closing_ids);
END
$$;
COMMENT ON FUNCTION api.admin_dsfinvk_receipts IS 'api.dsfinvk_receipts for a finance session.';
