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

CREATE OR REPLACE FUNCTION ledger.tse_process_data(p_tx_id bigint)
RETURNS text LANGUAGE plpgsql STABLE AS $$
-- The process data of a receipt (process type Kassenbeleg-V1): Beleg^<gross per VAT rate 19_7_10.7_5.5_0>^<amount>:<Bar|Unbar>,
-- money leaving the customer for the till positive. Top-ups, payouts and transfers of credit (vouchers) are not taxable and
-- stand at 0 %. Raises validation for a VAT rate outside the five DSFinV-K rates.
DECLARE
    t ledger.transaction;
    v_sign integer;
    v_gross bigint[] := ARRAY[0, 0, 0, 0, 0];
    r record;
    v_slot integer;
BEGIN
    SELECT * INTO t FROM ledger.transaction WHERE id = p_tx_id;
    -- From the till's side: a sale or a top-up brings money in, a refund, payout, chargeback or deposit return pays out.
    v_sign := CASE WHEN t.type IN ('purchase', 'topup') THEN 1 ELSE -1 END;
    IF t.type = 'purchase' AND EXISTS (SELECT FROM ledger.item i WHERE i.transaction_id = t.id) THEN
        FOR r IN SELECT i.vat_rate, sum(i.quantity * i.unit_price)::bigint AS gross
                   FROM ledger.item i WHERE i.transaction_id = t.id GROUP BY i.vat_rate LOOP
            v_slot := CASE r.vat_rate WHEN 19 THEN 1 WHEN 7 THEN 2 WHEN 10.7 THEN 3 WHEN 5.5 THEN 4 WHEN 0 THEN 5 END;
            IF v_slot IS NULL THEN
                PERFORM ledger.fail('validation', format('VAT rate %s is not one of DSFinV-K''s five', r.vat_rate));
            END IF;
            v_gross[v_slot] := v_gross[v_slot] + v_sign * r.gross;
        END LOOP;
    ELSIF t.type = 'deposit_return' THEN
        v_gross[5] := v_sign * (SELECT sum(i.quantity * i.unit_price) FROM ledger.item i WHERE i.transaction_id = t.id)::bigint;
    ELSE
        v_gross[5] := v_sign * t.amount;
    END IF;
    RETURN format('Beleg^%s_%s_%s_%s_%s^%s:%s',
                  ledger.money(v_gross[1]), ledger.money(v_gross[2]), ledger.money(v_gross[3]),
                  ledger.money(v_gross[4]), ledger.money(v_gross[5]),
                  ledger.money(v_gross[1] + v_gross[2] + v_gross[3] + v_gross[4] + v_gross[5]),
                  CASE WHEN t.payment = 'cash' THEN 'Bar' ELSE 'Unbar' END);
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

CREATE OR REPLACE FUNCTION api.tse_failed(p_outbox_id bigint, p_cause text)
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Records that the TSE could not sign a request: it is retried later (backoff 1, 2, 4 ... 60 s) and an outage is
-- opened if none is open. Returns when the request is due again.
DECLARE
    v_retry timestamptz;
BEGIN
    UPDATE ledger.outbox
       SET attempts = attempts + 1, last_error = left(p_cause, 1000),
           retry_at = now() + make_interval(secs => least(60, power(2, least(attempts, 6))))
     WHERE id = p_outbox_id AND done_at IS NULL
    RETURNING retry_at INTO v_retry;
    INSERT INTO ledger.tse_outage (cause) SELECT left(coalesce(p_cause, 'unknown'), 1000)
     WHERE NOT EXISTS (SELECT FROM ledger.tse_outage WHERE ended_at IS NULL)
    ON CONFLICT DO NOTHING;
    RETURN v_retry;
END
$$;
COMMENT ON FUNCTION api.tse_failed IS 'Records a failed signing attempt (backoff) and opens a TSE outage. Returns when it is due again.';

CREATE OR REPLACE FUNCTION api.set_seller(p_event_id bigint, p_name text, p_address text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Sets the seller (name and address) that every receipt of the event names, as KassenSichV section 6 asks.
-- Returns nothing; raises not-found for an unknown event, validation for an empty name or address.
BEGIN
    IF coalesce(btrim(p_name), '') = '' OR coalesce(btrim(p_address), '') = '' THEN
        PERFORM ledger.fail('validation', 'a receipt needs the seller''s name and address');
    END IF;
    UPDATE ledger.event SET seller_name = btrim(p_name), seller_address = btrim(p_address) WHERE id = p_event_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('event %s does not exist', p_event_id));
    END IF;
END
$$;
COMMENT ON FUNCTION api.set_seller IS 'Sets the seller name and address printed on the event''s receipts.';

CREATE OR REPLACE FUNCTION api.receipt(p_tx_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Everything a receipt shows (KassenSichV section 6): seller, till, start and end time, items, gross, net and tax per
-- VAT rate, total and payment, and the TSE signature with its numbers, or tse_failed when the TSE could not sign yet.
-- Returns a JSON document; raises not-found unless the transaction is a committed receipt.
DECLARE
    t ledger.transaction;
    v jsonb;
BEGIN
    SELECT * INTO t FROM ledger.transaction WHERE id = p_tx_id;
    IF NOT FOUND OR t.state <> 'Committed' OR t.type = 'transfer' THEN
        PERFORM ledger.fail('not-found', format('transaction %s is not a committed receipt', p_tx_id));
    END IF;
    WITH lines AS (
        SELECT i.line_no, i.name, i.quantity, i.unit_price, i.vat_rate, i.quantity * i.unit_price AS gross
          FROM ledger.item i WHERE i.transaction_id = t.id
        UNION ALL
        -- Money without items (top-ups, refunds, payouts, chargebacks) is one untaxed line.
        SELECT 1, initcap(replace(t.type::text, '_', ' ')), 1, t.amount, 0, t.amount
         WHERE NOT EXISTS (SELECT FROM ledger.item i WHERE i.transaction_id = t.id)),
    rates AS (
        SELECT vat_rate, sum(gross)::bigint AS gross, round(sum(gross) * vat_rate / (100 + vat_rate))::bigint AS tax
          FROM lines GROUP BY vat_rate)
    SELECT jsonb_build_object(
        'transaction_id', t.id, 'type', t.type,
        'seller', jsonb_build_object('name', coalesce(nullif(e.seller_name, ''), e.name), 'address', e.seller_address,
                                     'merchant', m.name),
        'event', jsonb_build_object('id', e.id, 'name', e.name, 'currency', e.currency, 'time_zone', e.time_zone),
        'till', jsonb_build_object('client_id', ledger.tse_client_id(t.assignment_id), 'assignment_id', t.assignment_id,
                                   'device', a.device, 'position', p.name),
        'started_at', t.created_at, 'ended_at', t.committed_at,
        'items', (SELECT jsonb_agg(jsonb_build_object('name', l.name, 'quantity', l.quantity, 'unit_price', l.unit_price,
                                                      'vat_rate', l.vat_rate, 'gross', l.gross) ORDER BY l.line_no) FROM lines l),
        'vat', (SELECT jsonb_agg(jsonb_build_object('rate', r.vat_rate, 'gross', r.gross, 'tax', r.tax, 'net', r.gross - r.tax)
                                 ORDER BY r.vat_rate DESC) FROM rates r),
        'total', t.amount, 'fee', t.fee,
        'payment', CASE WHEN t.payment = 'cash' THEN 'Bar' ELSE 'Unbar' END,
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
