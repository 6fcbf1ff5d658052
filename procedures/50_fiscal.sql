SET LOCAL ROLE festpay_owner;

-- Fiscal signing (SPEC 8): what a relay needs to sign receipts outside the booking, in order per till, exactly once.
-- The booking enqueues (ledger.book -> ledger.enqueue); a relay claims a till's requests (api.outbox_claim), asks the
-- TSE, and stores the signature (api.tse_store) or the failure (api.tse_failed).

CREATE OR REPLACE FUNCTION ledger.enqueue(p_topic text, p_ordering_key text, p_tx_id bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
-- Asks outside parties of p_topic to handle a committed transaction, in the booking's own transaction, and wakes a
-- sleeping relay (NOTIFY festpay_outbox, payload the topic) -- only when one sleeps: see ledger.relay_wakeup.
-- Returns the outbox request's id.
DECLARE
    v_id bigint;
    v_asleep boolean;
BEGIN
    INSERT INTO ledger.outbox (topic, ordering_key, transaction_id) VALUES (p_topic, p_ordering_key, p_tx_id)
    RETURNING id, (SELECT w.asleep FROM ledger.relay_wakeup w WHERE w.topic = p_topic) INTO v_id, v_asleep;
    IF v_asleep THEN
        UPDATE ledger.relay_wakeup SET asleep = false WHERE topic = p_topic AND asleep;
        IF FOUND THEN
            PERFORM pg_notify('festpay_outbox', p_topic);
        END IF;
    END IF;
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION api.relay_sleep(p_topic text)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A relay that found nothing to do says it will wait for NOTIFY (the next enqueue then sends one), and checks once
-- more. Returns true when requests are due after all (do not sleep). A wake-up lost between a booking's check and
-- its commit is caught by the relay's poll timeout: the outbox, not NOTIFY, is the truth.
BEGIN
    INSERT INTO ledger.relay_wakeup (topic, asleep) VALUES (p_topic, true)
    ON CONFLICT (topic) DO UPDATE SET asleep = true WHERE NOT ledger.relay_wakeup.asleep;
    RETURN EXISTS (SELECT FROM ledger.outbox o WHERE o.topic = p_topic AND o.done_at IS NULL
                      AND (o.retry_at IS NULL OR o.retry_at <= now()));
END
$$;
COMMENT ON FUNCTION api.relay_sleep IS
    'A relay is about to wait for NOTIFY: the next enqueue of the topic sends one. Returns true when work is due after all.';

CREATE OR REPLACE FUNCTION ledger.tse_client_id(p_assignment_id bigint)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
-- The TSE client id of a till: the terminal assignment, or the backend for bookings made without a till.
-- Returns at most 30 printable characters. (The explicit ::text keeps the body immutable, so it is inlined: text ||
-- bigint would be the stable anytextcat, and the function would be planned on every call, 32 us each.)
    SELECT CASE WHEN p_assignment_id IS NULL THEN 'festpay-backend' ELSE 'festpay-' || p_assignment_id::text END;
$$;

CREATE OR REPLACE FUNCTION ledger.money(p_cents bigint)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
-- Cents as a decimal amount with two places and a point (DSFinV-K process data), e.g. -1050 -> -10.50.
-- Returns text.
    SELECT CASE WHEN p_cents < 0 THEN '-' ELSE '' END || (abs(p_cents) / 100)::text || '.' || lpad((abs(p_cents) % 100)::text, 2, '0');
$$;

-- The receipt rules: every receipt, its signed process data and the DSFinV-K export are made from ledger.receipt_lines_of,
-- so they agree to the cent. The VAT treatment of each line, with the source it follows, is described in
-- python_gateway/dsfinvk.py.

CREATE OR REPLACE FUNCTION ledger.receipt_sign(p_type ledger.tx_type)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
-- From the till's side: a sale or a top-up brings money in (+1); a refund, payout, chargeback or deposit return pays out.
-- Returns 1 or -1.
    SELECT CASE WHEN p_type IN ('purchase', 'topup') THEN 1 ELSE -1 END;
$$;

CREATE OR REPLACE FUNCTION ledger.vat_key(p_rate numeric)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
-- The DSFinV-K VAT key (USt-Schluessel) of a rate, also its slot in the process data: 1 = 19 %, 2 = 7 %, 3 = 10.7 %,
-- 4 = 5.5 %, 5 = 0 % (not taxable). Returns the key, NULL for any other rate.
    SELECT CASE p_rate WHEN 19 THEN 1 WHEN 7 THEN 2 WHEN 10.7 THEN 3 WHEN 5.5 THEN 4 WHEN 0 THEN 5 END;
$$;

CREATE OR REPLACE FUNCTION ledger.fee_vat_rate()
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
-- The VAT rate of a fee the festival charges for a top-up or a payout: a service of its own at the general rate.
-- Returns 19 (percent).
    SELECT 19::numeric;
$$;

CREATE OR REPLACE FUNCTION ledger.payment_type(p_payment ledger.payment_method)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
-- The DSFinV-K payment type (ZAHLART_TYP) of a receipt and the last field of its process data.
-- Returns Bar for cash, Unbar for card, online and credit (NULL payment).
    SELECT CASE WHEN p_payment = 'cash' THEN 'Bar' ELSE 'Unbar' END;
$$;

CREATE OR REPLACE FUNCTION ledger.payment_name(p_type ledger.tx_type, p_payment ledger.payment_method)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
-- The DSFinV-K payment name (ZAHLART_NAME) of a receipt: Bar, Karte, Online, Ueberweisung (a payout by bank) or
-- Mehrzweckgutschein (paid with credit). Returns text.
    SELECT CASE WHEN p_type = 'payout' AND p_payment = 'online' THEN 'Ueberweisung'
                WHEN p_payment = 'cash' THEN 'Bar' WHEN p_payment = 'card' THEN 'Karte'
                WHEN p_payment = 'online' THEN 'Online' ELSE 'Mehrzweckgutschein' END;
$$;

CREATE OR REPLACE FUNCTION ledger.is_receipt(p_type ledger.tx_type)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
-- Tells whether a committed transaction of this type is a receipt (signed, printed, exported): all but transfers,
-- which move credit between two customers without any till, and donations, a customer's gift of its credit to the
-- festival (no till, no supply). Returns true or false.
    SELECT p_type NOT IN ('transfer', 'donation');
$$;

CREATE OR REPLACE FUNCTION ledger.receipt_lines_of(p_tx_ids bigint[])
RETURNS TABLE (transaction_id bigint, line_no integer, kind text, name text, quantity integer, unit_price bigint,
               vat_rate numeric, vat_key integer, gross bigint, net bigint, tax bigint)
LANGUAGE sql STABLE AS $$
-- The lines of the receipts of the given transactions, money into the till positive: a sale's or deposit return's
-- items at their own rates (kind item or deposit); a chargeback split over its sale's rates; other money one voucher
-- line at 0 % (a top-up without its fee); a fee its own line at the general rate. A line's tax is its share of its receipt's tax at that rate, so a
-- receipt's lines of a rate add up to exactly round(gross * rate / (100 + rate)). Returns them by transaction and line.
    WITH t AS (SELECT * FROM ledger.transaction WHERE id = ANY (p_tx_ids)),
    lines AS (
        SELECT t.id AS transaction_id, i.line_no::integer AS line_no,
               CASE WHEN i.returnable THEN 'deposit' ELSE 'item' END AS kind, i.name, i.quantity, i.unit_price,
               i.vat_rate, ledger.receipt_sign(t.type) * i.quantity * i.unit_price AS gross
          FROM t JOIN ledger.item i ON i.transaction_id = t.id
         WHERE t.type IN ('purchase', 'deposit_return')
        UNION ALL
        SELECT t.id, 1, 'voucher', initcap(replace(t.type::text, '_', ' ')), 1,
               t.amount - CASE WHEN t.type = 'topup' THEN t.fee ELSE 0 END, 0::numeric,
               ledger.receipt_sign(t.type) * (t.amount - CASE WHEN t.type = 'topup' THEN t.fee ELSE 0 END)
          FROM t
         WHERE NOT (t.type IN ('purchase', 'deposit_return') AND EXISTS (SELECT FROM ledger.item i WHERE i.transaction_id = t.id))
           AND NOT (t.type = 'chargeback' AND EXISTS (SELECT FROM ledger.item i WHERE i.transaction_id = t.linked_id
                                                                              AND NOT i.returnable))
        UNION ALL
        -- A chargeback returns part of a sale's merchant share: split over that share's VAT rates in proportion
        -- (cumulative rounding, so the parts add up to the amount), it reduces each rate's taxable amount.
        SELECT c.id, (row_number() OVER (PARTITION BY c.id ORDER BY c.vat_rate DESC))::integer, 'chargeback',
               'Chargeback', 1, c.part, c.vat_rate, -c.part
          FROM (SELECT x.id, x.vat_rate,
                       (round(x.amount * x.upto / x.share) - round(x.amount * (x.upto - x.gross) / x.share))::bigint AS part
                  FROM (SELECT t.id, t.amount, r.vat_rate, r.gross,
                               sum(r.gross) OVER (PARTITION BY t.id ORDER BY r.vat_rate DESC) AS upto,
                               sum(r.gross) OVER (PARTITION BY t.id) AS share
                          FROM t
                          CROSS JOIN LATERAL (SELECT i.vat_rate, sum(i.quantity * i.unit_price) AS gross
                                                FROM ledger.item i
                                               WHERE i.transaction_id = t.linked_id AND NOT i.returnable
                                               GROUP BY i.vat_rate) r
                         WHERE t.type = 'chargeback') x
                 WHERE x.share > 0) c
         WHERE c.part <> 0
        UNION ALL
        SELECT t.id, 2, 'fee', CASE WHEN t.type = 'topup' THEN 'Top-up fee' ELSE 'Payout fee' END, 1, t.fee,
               ledger.fee_vat_rate(), t.fee
          FROM t WHERE t.fee > 0 AND t.type IN ('topup', 'payout')),
    running AS (
        SELECT l.*, sum(l.gross) OVER (PARTITION BY l.transaction_id, l.vat_rate ORDER BY l.line_no) AS upto
          FROM lines l)
    SELECT r.transaction_id, r.line_no, r.kind, r.name, r.quantity, r.unit_price, r.vat_rate, ledger.vat_key(r.vat_rate),
           r.gross, r.gross - x.tax, x.tax
      FROM running r,
           LATERAL (SELECT (round(r.upto * r.vat_rate / (100 + r.vat_rate))
                            - round((r.upto - r.gross) * r.vat_rate / (100 + r.vat_rate)))::bigint AS tax) x
     ORDER BY r.transaction_id, r.line_no;
$$;

CREATE OR REPLACE FUNCTION ledger.receipt_lines(p_tx_id bigint)
RETURNS TABLE (line_no integer, kind text, name text, quantity integer, unit_price bigint, vat_rate numeric,
               vat_key integer, gross bigint, net bigint, tax bigint)
LANGUAGE sql STABLE AS $$
-- The lines of one receipt (ledger.receipt_lines_of, the one rule of what a receipt contains).
-- Returns them in order (none for an unknown id).
    SELECT l.line_no, l.kind, l.name, l.quantity, l.unit_price, l.vat_rate, l.vat_key, l.gross, l.net, l.tax
      FROM ledger.receipt_lines_of(ARRAY[p_tx_id]) l;
$$;

CREATE OR REPLACE FUNCTION ledger.receipt_vat(p_tx_id bigint)
RETURNS TABLE (vat_key integer, vat_rate numeric, gross bigint, net bigint, tax bigint)
LANGUAGE sql STABLE AS $$
-- A receipt's sums per VAT rate (DSFinV-K Bonkopf_USt, the receipt's VAT block): tax rounded once per rate.
-- Returns one row per rate, highest rate first.
    SELECT l.vat_key, l.vat_rate, sum(l.gross)::bigint, sum(l.net)::bigint, sum(l.tax)::bigint
      FROM ledger.receipt_lines(p_tx_id) l GROUP BY l.vat_key, l.vat_rate ORDER BY l.vat_rate DESC;
$$;

CREATE OR REPLACE FUNCTION ledger.tse_process_data(p_tx_id bigint)
RETURNS text LANGUAGE plpgsql STABLE AS $$
-- The process data of a receipt (process type Kassenbeleg-V1): Beleg^<gross per VAT key 19_7_10.7_5.5_0>^<total>:<Bar|Unbar>,
-- from ledger.receipt_lines (money into the till positive). Raises validation for a VAT rate outside DSFinV-K's five.
DECLARE
    v_gross bigint[] := ARRAY[0, 0, 0, 0, 0];
    v_payment ledger.payment_method;
    r record;
BEGIN
    SELECT t.payment INTO v_payment FROM ledger.transaction t WHERE t.id = p_tx_id;
    FOR r IN SELECT v.vat_key, v.vat_rate, v.gross FROM ledger.receipt_vat(p_tx_id) v LOOP
        IF r.vat_key IS NULL THEN
            PERFORM ledger.fail('validation', format('VAT rate %s is not one of DSFinV-K''s five', r.vat_rate));
        END IF;
        v_gross[r.vat_key] := r.gross;
    END LOOP;
    RETURN format('Beleg^%s_%s_%s_%s_%s^%s:%s',
                  ledger.money(v_gross[1]), ledger.money(v_gross[2]), ledger.money(v_gross[3]),
                  ledger.money(v_gross[4]), ledger.money(v_gross[5]),
                  ledger.money(v_gross[1] + v_gross[2] + v_gross[3] + v_gross[4] + v_gross[5]),
                  ledger.payment_type(v_payment));
END
$$;

-- Claims used an advisory lock per ordering key before ledger.outbox_key; those functions are gone.
DROP FUNCTION IF EXISTS api.outbox_release(text, text);
DROP FUNCTION IF EXISTS ledger.holds_lock(bigint);
DROP FUNCTION IF EXISTS ledger.outbox_lock(text, text);

CREATE OR REPLACE FUNCTION api.outbox_prepare(p_topic text)
RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Gives every ordering key (till) with pending requests of p_topic its lock row in ledger.outbox_key, once per key
-- ever. A relay calls it outside its claim transaction, so no relay waits on another's insert.
-- Returns the number of keys added.
    WITH added AS (
        INSERT INTO ledger.outbox_key (topic, ordering_key)
        SELECT DISTINCT o.topic, o.ordering_key FROM ledger.outbox o
         WHERE o.topic = p_topic AND o.done_at IS NULL
           AND NOT EXISTS (SELECT FROM ledger.outbox_key k WHERE k.topic = o.topic AND k.ordering_key = o.ordering_key)
        ON CONFLICT DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM added;
$$;
COMMENT ON FUNCTION api.outbox_prepare IS
    'Adds the lock rows of ordering keys (tills) with pending requests; call before claiming. Returns how many.';

CREATE OR REPLACE FUNCTION api.outbox_claim(p_topic text, p_limit integer DEFAULT 100)
RETURNS TABLE (outbox_id bigint, ordering_key text, transaction_id bigint, attempts integer, started jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Takes ONE ordering key (a till) whose oldest pending request is due, oldest first: locks its ledger.outbox_key row
-- FOR UPDATE SKIP LOCKED, so no other relay takes that till until the caller's transaction ends (keep it open while
-- handling; its end, or the session's, gives the till back). Returns the till's pending requests in id order; no
-- rows when every due till is taken or nothing is due.
DECLARE
    v_key text;
BEGIN
    SELECT k.ordering_key INTO v_key
      FROM ledger.outbox_key k
      JOIN LATERAL (SELECT o.id, o.retry_at FROM ledger.outbox o
                     WHERE o.topic = k.topic AND o.ordering_key = k.ordering_key AND o.done_at IS NULL
                     ORDER BY o.id LIMIT 1) head ON true
     WHERE k.topic = p_topic AND (head.retry_at IS NULL OR head.retry_at <= now())
     ORDER BY head.id
     LIMIT 1
       FOR UPDATE OF k SKIP LOCKED;
    IF v_key IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT o.id, o.ordering_key::text, o.transaction_id, o.attempts, o.started
          FROM ledger.outbox o
         WHERE o.topic = p_topic AND o.ordering_key = v_key AND o.done_at IS NULL
         ORDER BY o.id LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION api.outbox_claim IS
    'Takes the due requests of one till (ordering key) for a relay, in order, locking the till FOR UPDATE SKIP LOCKED '
    'until the caller''s transaction ends. Returns them.';

CREATE OR REPLACE FUNCTION api.outbox_lag(p_topic text)
RETURNS TABLE (pending bigint, oldest_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- How far the relays of a topic are behind: requests not done yet and the age of the oldest, for /health/ready.
-- Returns one row (0 and NULL when nothing waits).
    SELECT count(*), (extract(epoch FROM now() - min(created_at)) * 1000)::bigint
      FROM ledger.outbox WHERE topic = p_topic AND done_at IS NULL;
$$;
COMMENT ON FUNCTION api.outbox_lag IS 'Pending requests of a topic and the age of the oldest in ms.';

CREATE OR REPLACE FUNCTION api.tse_request(p_outbox_id bigint)
RETURNS TABLE (transaction_id bigint, client_id text, process_type text, process_data text, started jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- What the TSE is to sign for a signing request: the till's client id, process type Kassenbeleg-V1 and the receipt's
-- process data, and what was already started at the TSE (its transaction number), if anything.
    SELECT t.id, ledger.tse_client_id(t.assignment_id), 'Kassenbeleg-V1', ledger.tse_process_data(t.id), o.started
      FROM ledger.outbox o JOIN ledger.transaction t ON t.id = o.transaction_id
     WHERE o.id = p_outbox_id AND o.topic = 'tse';
$$;
COMMENT ON FUNCTION api.tse_request IS 'The client id, process type and process data to sign for a request, and its started TSE transaction.';

CREATE OR REPLACE FUNCTION api.tse_started(p_outbox_id bigint, p_started jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Records that the TSE began a transaction for this request (its number, start time), before it is finished, so
-- that a retry after a crash finishes the same TSE transaction instead of signing the receipt twice. The first record
-- stays: a relay that started a second TSE transaction meanwhile (it lost its claim) is told the first one.
-- Returns the record in force, to be finished; raises not-found when the request is unknown or done.
DECLARE
    v_started jsonb;
BEGIN
    UPDATE ledger.outbox SET started = coalesce(started, p_started) WHERE id = p_outbox_id AND done_at IS NULL
    RETURNING started INTO v_started;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('signing request %s is unknown or done', p_outbox_id));
    END IF;
    RETURN v_started;
END
$$;
COMMENT ON FUNCTION api.tse_started IS
    'Records the TSE transaction begun for a request (the first one stays), so that a retry finishes the same one. Returns the record in force.';

CREATE OR REPLACE FUNCTION api.tse_store(p_outbox_id bigint, p_signed jsonb)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Stores the TSE's signature of a request (serial, client id, process type and data, transaction number, signature
-- counter, start and log time as Unix seconds, algorithm, signature and public key base64) and marks it done; a
-- signature that arrives after failures is marked late, and an open outage ends. Raises not-found when done already.
DECLARE
    o ledger.outbox;
BEGIN
    SELECT * INTO o FROM ledger.outbox WHERE id = p_outbox_id AND topic = 'tse' FOR UPDATE;
    IF NOT FOUND OR o.done_at IS NOT NULL THEN
        PERFORM ledger.fail('not-found', format('signing request %s is unknown or signed already', p_outbox_id));
    END IF;
    INSERT INTO ledger.tse_signature (transaction_id, tse_serial, client_id, process_type, process_data, tse_tx_number,
                                      signature_counter, start_time, log_time, algorithm, signature, public_key, late)
    VALUES (o.transaction_id, p_signed ->> 'serial_number', p_signed ->> 'client_id', p_signed ->> 'process_type',
            p_signed ->> 'process_data', (p_signed ->> 'transaction_number')::bigint,
            (p_signed ->> 'signature_counter')::bigint, to_timestamp((p_signed ->> 'start_time')::double precision),
            to_timestamp((p_signed ->> 'log_time')::double precision), p_signed ->> 'algorithm',
            decode(p_signed ->> 'signature', 'base64'), decode(p_signed ->> 'public_key', 'base64'),
            -- Late: its receipt was issued while the TSE could not sign (it failed itself, or waited during an outage).
            o.attempts > 0 OR EXISTS (SELECT FROM ledger.tse_outage u WHERE coalesce(u.ended_at, 'infinity') >= o.created_at));
    UPDATE ledger.outbox SET done_at = now() WHERE id = p_outbox_id;
    UPDATE ledger.tse_outage SET ended_at = now() WHERE ended_at IS NULL;
END
$$;
COMMENT ON FUNCTION api.tse_store IS 'Stores the signature of a request and marks it done (late after failures); ends an open outage.';

CREATE OR REPLACE FUNCTION ledger.outbox_retry(p_outbox_id bigint, p_topic text, p_cause text)
RETURNS timestamptz LANGUAGE sql AS $$
-- Records that an outbox request of p_topic could not be handled yet: attempts + 1, the cause, and the next try
-- after a backoff of 1, 2, 4 ... 60 s. Returns when it is due again (NULL when it is unknown or done).
    UPDATE ledger.outbox
       SET attempts = attempts + 1, last_error = left(p_cause, 1000),
           retry_at = now() + make_interval(secs => least(60, power(2, least(attempts, 6))))
     WHERE id = p_outbox_id AND topic = p_topic AND done_at IS NULL
    RETURNING retry_at;
$$;

CREATE OR REPLACE FUNCTION api.tse_failed(p_outbox_id bigint, p_cause text)
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Records that the TSE could not sign a request: it is retried later (ledger.outbox_retry) and an outage is opened
-- if none is open. Returns when the request is due again.
DECLARE
    v_retry timestamptz := ledger.outbox_retry(p_outbox_id, 'tse', p_cause);
BEGIN
    INSERT INTO ledger.tse_outage (cause) SELECT left(coalesce(p_cause, 'unknown'), 1000)
     WHERE NOT EXISTS (SELECT FROM ledger.tse_outage WHERE ended_at IS NULL)
    ON CONFLICT DO NOTHING;
    RETURN v_retry;
END
$$;
COMMENT ON FUNCTION api.tse_failed IS 'Records a failed signing attempt (backoff) and opens a TSE outage. Returns when it is due again.';

CREATE OR REPLACE FUNCTION api.set_seller(p_event_id bigint, p_name text, p_street text, p_postcode text,
                                           p_city text, p_tax_number text DEFAULT '', p_vat_id text DEFAULT '')
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Sets the seller that every receipt names (KassenSichV section 6) and the DSFinV-K export's master data: name,
-- street, postcode, city, tax number (StNr) and VAT id (USt-IdNr). Raises not-found, or validation naming the field.
DECLARE
    v_field text;
BEGIN
    FOREACH v_field IN ARRAY ARRAY['name', 'street', 'postcode', 'city'] LOOP
        IF coalesce(btrim(CASE v_field WHEN 'name' THEN p_name WHEN 'street' THEN p_street
                                       WHEN 'postcode' THEN p_postcode ELSE p_city END), '') = '' THEN
            PERFORM ledger.fail('validation', format('a receipt needs the seller''s %s', v_field),
                                jsonb_build_object('field', CASE v_field WHEN 'name' THEN 'seller_name'
                                                                         ELSE 'seller_' || v_field END));
        END IF;
    END LOOP;
    BEGIN
        UPDATE ledger.event
           SET seller_name = btrim(p_name), seller_street = btrim(p_street), seller_postcode = btrim(p_postcode),
               seller_city = btrim(p_city), tax_number = btrim(coalesce(p_tax_number, '')),
               vat_id = upper(replace(btrim(coalesce(p_vat_id, '')), ' ', ''))
         WHERE id = p_event_id;
    EXCEPTION WHEN check_violation THEN
        v_field := substring(SQLERRM FROM 'constraint "event_(.*)_check"');
        PERFORM ledger.fail('validation',
                            CASE v_field WHEN 'tax_number' THEN 'a tax number (StNr) has digits, spaces and slashes'
                                         WHEN 'vat_id' THEN 'a VAT id (USt-IdNr) is a country code and 2 to 12 characters, e.g. DE123456789'
                                         WHEN 'seller_postcode' THEN 'a postcode has at most 10 letters or digits'
                                         WHEN 'seller_street' THEN 'the street has at most 200 characters'
                                         ELSE 'the city has at most 100 characters' END,
                            jsonb_build_object('field', v_field));
    END;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('event %s does not exist', p_event_id));
    END IF;
END
$$;
COMMENT ON FUNCTION api.set_seller IS 'Sets the seller name, address, tax number and VAT id printed on receipts and exported.';

CREATE OR REPLACE FUNCTION ledger.seller(p_event_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- The seller of an event as receipts and the DSFinV-K export show it: name (the event's when unset), street, postcode,
-- city, country, tax number and VAT id. Returns a JSON object.
    SELECT jsonb_build_object('name', coalesce(nullif(e.seller_name, ''), e.name), 'street', e.seller_street,
                              'postcode', e.seller_postcode, 'city', e.seller_city, 'country', 'DEU',
                              'tax_number', e.tax_number, 'vat_id', e.vat_id)
      FROM ledger.event e WHERE e.id = p_event_id;
$$;

CREATE OR REPLACE FUNCTION api.receipt(p_tx_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Everything a receipt shows (KassenSichV section 6): seller, till, start and end time, the lines and the gross, net
-- and tax per VAT rate of ledger.receipt_lines (money into the till positive, as signed), total and payment, and the
-- TSE signature, or tse_failed while the TSE could not sign. Raises not-found unless it is a committed receipt.
DECLARE
    t ledger.transaction;
    v jsonb;
BEGIN
    SELECT * INTO t FROM ledger.transaction WHERE id = p_tx_id;
    IF NOT FOUND OR t.state <> 'Committed' OR NOT ledger.is_receipt(t.type) THEN
        PERFORM ledger.fail('not-found', format('transaction %s is not a committed receipt', p_tx_id));
    END IF;
    SELECT jsonb_build_object(
        'transaction_id', t.id, 'type', t.type,
        'seller', ledger.seller(e.id) || jsonb_build_object('merchant', m.name),
        'event', jsonb_build_object('id', e.id, 'name', e.name, 'currency', e.currency, 'time_zone', e.time_zone),
        'till', jsonb_build_object('client_id', ledger.tse_client_id(t.assignment_id), 'assignment_id', t.assignment_id,
                                   'device', a.device, 'position', p.name),
        'started_at', t.created_at, 'ended_at', t.committed_at,
        'items', (SELECT jsonb_agg(jsonb_build_object('name', l.name, 'kind', l.kind, 'quantity', l.quantity,
                                                      'unit_price', sign(l.gross) * l.unit_price,
                                                      'vat_rate', l.vat_rate, 'gross', l.gross) ORDER BY l.line_no)
                    FROM ledger.receipt_lines(t.id) l),
        'vat', (SELECT jsonb_agg(jsonb_build_object('rate', r.vat_rate, 'key', r.vat_key, 'gross', r.gross,
                                                    'tax', r.tax, 'net', r.net) ORDER BY r.vat_rate DESC)
                  FROM ledger.receipt_vat(t.id) r),
        'total', (SELECT sum(l.gross)::bigint FROM ledger.receipt_lines(t.id) l), 'fee', t.fee,
        'payment', ledger.payment_type(t.payment),
        'payment_name', ledger.payment_name(t.type, t.payment),
        'tse', (SELECT jsonb_build_object('serial_number', s.tse_serial, 'client_id', s.client_id,
                       'process_type', s.process_type, 'process_data', s.process_data,
                       'transaction_number', s.tse_tx_number, 'signature_counter', s.signature_counter,
                       'start_time', s.start_time, 'log_time', s.log_time, 'algorithm', s.algorithm,
                       'signature', translate(encode(s.signature, 'base64'), E'\n', ''),
                       'public_key', translate(encode(s.public_key, 'base64'), E'\n', ''),
                       'late', s.late)
                  FROM ledger.tse_signature s WHERE s.transaction_id = t.id),
        -- KassenSichV: a receipt issued while the TSE cannot sign says so.
        'tse_failed', NOT EXISTS (SELECT FROM ledger.tse_signature s WHERE s.transaction_id = t.id)
                      AND (EXISTS (SELECT FROM ledger.outbox o WHERE o.transaction_id = t.id AND o.topic = 'tse' AND o.attempts > 0)
                           OR EXISTS (SELECT FROM ledger.tse_outage x WHERE x.ended_at IS NULL)))
      INTO v
      FROM ledger.event e
      LEFT JOIN ledger.assignment a ON a.id = t.assignment_id
      LEFT JOIN ledger.position p ON p.id = a.position_id
      LEFT JOIN ledger.account ma ON ma.id = t.other_account_id AND ma.kind = 'merchant'
      LEFT JOIN ledger.merchant m ON m.account_id = ma.id
     WHERE e.id = t.event_id;
    RETURN v;
END
$$;
COMMENT ON FUNCTION api.receipt IS 'The content of a receipt (KassenSichV section 6) with its TSE signature, or tse_failed. Returns JSON.';

CREATE OR REPLACE FUNCTION api.terminal_receipt(p_assignment_id bigint, p_terminal_tx_number bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- api.receipt of a till's own transaction, by its terminal number: a terminal reprints its own receipts only.
-- Returns the receipt document; raises not-found for an unknown number or one that is no committed receipt.
BEGIN
    RETURN api.receipt((api.terminal_transaction(p_assignment_id, p_terminal_tx_number)).transaction_id);
END
$$;
COMMENT ON FUNCTION api.terminal_receipt IS 'A till''s own receipt by its terminal transaction number (api.receipt). Returns JSON.';
