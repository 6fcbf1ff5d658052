SET LOCAL ROLE festpay_owner;

-- Cash-point closings (Kassenabschluss) and the rows of the DSFinV-K export (SPEC 8). A closing takes every committed
-- receipt of one till not closed yet and gives it the till's next Z number; the export reads closed receipts only.

CREATE OR REPLACE FUNCTION ledger.receipt_sign(p_type ledger.tx_type)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
-- From the till's side, as in the process data: a sale or a top-up brings money in (+1), everything else pays out.
-- Returns 1 or -1.
    SELECT CASE WHEN p_type IN ('purchase', 'topup') THEN 1 ELSE -1 END;
$$;

CREATE OR REPLACE FUNCTION ledger.open_receipts(p_event_id bigint)
RETURNS SETOF ledger.transaction LANGUAGE sql STABLE AS $$
-- The receipts of an event that no cash-point closing covers yet: committed transactions of every type but transfer.
-- Returns the transaction rows (inlined into the caller's query).
    SELECT t.* FROM ledger.transaction t
     WHERE t.event_id = p_event_id AND t.state = 'Committed' AND t.type <> 'transfer'
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
        SELECT t.id, ledger.receipt_sign(t.type) * t.amount AS amount
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

CREATE OR REPLACE FUNCTION ledger.vat_key(p_rate numeric)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
-- The DSFinV-K VAT key (USt-Schluessel) of a rate: 1 = 19 %, 2 = 7 %, 3 = 10.7 %, 4 = 5.5 %, 5 = 0 % (not taxable).
-- Returns the key, NULL for any other rate.
    SELECT CASE p_rate WHEN 19 THEN 1 WHEN 7 THEN 2 WHEN 10.7 THEN 3 WHEN 5.5 THEN 4 WHEN 0 THEN 5 END;
$$;

CREATE OR REPLACE FUNCTION ledger.payment_name(p_payment ledger.payment_method)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
-- The German name of a payment method in the DSFinV-K export: Bar, Karte, Online.
-- Returns text (NULL for NULL: paid with credit).
    SELECT CASE p_payment WHEN 'cash' THEN 'Bar' WHEN 'card' THEN 'Karte' WHEN 'online' THEN 'Online' END;
$$;

CREATE OR REPLACE FUNCTION api.dsfinvk_lines(p_closing_ids bigint[])
RETURNS TABLE (closing_id bigint, transaction_id bigint, line_no integer, gv_typ text, gv_name text, article text,
               quantity integer, unit_price bigint, vat_key integer, vat_rate numeric, gross bigint, net bigint, tax bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The receipt lines (DSFinV-K Bonpos) of the receipts the given closings cover, with their business case (GV_TYP,
-- GV_NAME; mapping in python_gateway/dsfinvk.py), VAT key and signed gross, net and tax in cents (till's side).
-- Returns them in closing, transaction and line order.
    WITH lines AS (
        SELECT c.closing_id, t.id AS transaction_id, i.line_no::integer AS line_no, t.type, t.payment,
               i.name, i.quantity, i.unit_price, i.vat_rate, i.returnable,
               ledger.receipt_sign(t.type) * i.quantity * i.unit_price AS gross
          FROM ledger.cashpoint_closing_transaction c
          JOIN ledger.transaction t ON t.id = c.transaction_id
          JOIN ledger.item i ON i.transaction_id = t.id
         WHERE c.closing_id = ANY (p_closing_ids) AND t.type IN ('purchase', 'deposit_return')
        UNION ALL
        -- Money without items (top-ups, refunds, payouts, chargebacks, item-less sales) is one untaxed line.
        SELECT c.closing_id, t.id, 1, t.type, t.payment, initcap(replace(t.type::text, '_', ' ')), 1, t.amount, 0, false,
               ledger.receipt_sign(t.type) * t.amount
          FROM ledger.cashpoint_closing_transaction c
          JOIN ledger.transaction t ON t.id = c.transaction_id
         WHERE c.closing_id = ANY (p_closing_ids)
           AND NOT (t.type IN ('purchase', 'deposit_return') AND EXISTS (SELECT FROM ledger.item i WHERE i.transaction_id = t.id)))
    SELECT l.closing_id, l.transaction_id, l.line_no,
           CASE WHEN l.type = 'topup' THEN 'MehrzweckgutscheinKauf'
                WHEN l.type = 'deposit_return' THEN 'PfandRueckzahlung'
                WHEN l.type = 'purchase' AND l.returnable THEN 'Pfand'
                WHEN l.type IN ('purchase', 'chargeback') THEN 'Umsatz'
                ELSE 'Auszahlung' END,
           CASE WHEN l.type = 'topup' THEN 'Aufladung Guthaben (Mehrzweckgutschein), ' || ledger.payment_name(l.payment)
                WHEN l.type IN ('purchase', 'deposit_return') AND l.payment IS NULL THEN 'MehrzweckgutscheinEinloesung'
                WHEN l.type = 'purchase' THEN 'Verkauf, ' || ledger.payment_name(l.payment)
                WHEN l.type = 'chargeback' THEN 'Rueckbuchung (Gutschrift auf Mehrzweckgutschein)'
                WHEN l.type = 'refund' THEN 'Auszahlung Restguthaben Mehrzweckgutschein (Bar)'
                WHEN l.type = 'payout' THEN 'Auszahlung Restguthaben Mehrzweckgutschein (Ueberweisung)'
                ELSE l.type::text END,
           l.name, l.quantity, l.unit_price, ledger.vat_key(l.vat_rate), l.vat_rate, l.gross,
           l.gross - round(l.gross * l.vat_rate / (100 + l.vat_rate))::bigint,
           round(l.gross * l.vat_rate / (100 + l.vat_rate))::bigint
      FROM lines l ORDER BY l.closing_id, l.transaction_id, l.line_no;
$$;
COMMENT ON FUNCTION api.dsfinvk_lines IS 'DSFinV-K receipt lines (business case, VAT key, gross/net/tax) of closed receipts. Returns rows.';

CREATE OR REPLACE FUNCTION api.dsfinvk_receipts(p_closing_ids bigint[])
RETURNS TABLE (closing_id bigint, transaction_id bigint, type text, terminal_tx_number bigint, started_at timestamptz,
               ended_at timestamptz, total bigint, payment_type text, payment_name text, tse_serial text,
               tse_tx_number bigint, signature_counter bigint, tse_start timestamptz, tse_end timestamptz,
               process_type text, process_data text, signature text, public_key text, algorithm text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The receipts (DSFinV-K Bonkopf) the given closings cover: signed total (till's side), payment type (Bar/Unbar) and
-- name, and the TSE signature (NULL fields while unsigned). Returns them in closing and transaction order.
    SELECT c.closing_id, t.id, t.type::text, t.terminal_tx_number, t.created_at, t.committed_at,
           ledger.receipt_sign(t.type) * t.amount,
           CASE WHEN t.payment = 'cash' THEN 'Bar' ELSE 'Unbar' END,
           CASE WHEN t.type = 'payout' AND t.payment = 'online' THEN 'Ueberweisung'
                ELSE coalesce(ledger.payment_name(t.payment), 'Mehrzweckgutschein') END,
           s.tse_serial, s.tse_tx_number, s.signature_counter, s.start_time, s.log_time, s.process_type, s.process_data,
           translate(encode(s.signature, 'base64'), E'\n', ''), translate(encode(s.public_key, 'base64'), E'\n', ''),
           s.algorithm
      FROM ledger.cashpoint_closing_transaction c
      JOIN ledger.transaction t ON t.id = c.transaction_id
      LEFT JOIN ledger.tse_signature s ON s.transaction_id = t.id
     WHERE c.closing_id = ANY (p_closing_ids)
     ORDER BY c.closing_id, t.id;
$$;
COMMENT ON FUNCTION api.dsfinvk_receipts IS 'DSFinV-K receipt heads (total, payment, TSE signature) of closed receipts. Returns rows.';
