SET LOCAL ROLE festpay_owner;

-- Setting up an event: event, merchants, positions, products, tags, terminal registration.

CREATE OR REPLACE FUNCTION api.create_event(
    p_name text, p_currency text, p_max_balance bigint, p_min_topup bigint, p_max_topup bigint,
    p_time_zone text DEFAULT 'Europe/Berlin',
    p_topup_fee_cash bigint DEFAULT 0, p_topup_fee_card bigint DEFAULT 0, p_topup_fee_online bigint DEFAULT 0,
    p_payout_fee bigint DEFAULT 0, p_reserve_timeout_s integer DEFAULT 120,
    p_offline_limit bigint DEFAULT 5000, p_offline_log_size integer DEFAULT 16)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates an event (amounts in cents) with its system accounts: top-up per method, fees, payout, deposit, donation.
-- Returns the event id; raises validation for a bad time zone, currency, limit or fee.
DECLARE
    v_id bigint;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_timezone_names WHERE name = p_time_zone) THEN
        PERFORM ledger.fail('validation', format('unknown time zone %L', p_time_zone), '{"field": "time_zone"}');
    END IF;
    BEGIN
        INSERT INTO ledger.event (name, currency, time_zone, max_balance, min_topup, max_topup,
                                  topup_fee_cash, topup_fee_card, topup_fee_online, payout_fee,
                                  reserve_timeout, offline_limit, offline_log_size, tag_key)
        VALUES (p_name, p_currency, p_time_zone, p_max_balance, p_min_topup, p_max_topup,
                p_topup_fee_cash, p_topup_fee_card, p_topup_fee_online, p_payout_fee,
                make_interval(secs => p_reserve_timeout_s), p_offline_limit, p_offline_log_size,
                extensions.gen_random_bytes(32))
        RETURNING id INTO v_id;
    EXCEPTION
        WHEN check_violation OR not_null_violation OR unique_violation THEN
            PERFORM ledger.fail('validation', format('event not valid: %s', SQLERRM));
    END;
    INSERT INTO ledger.account (event_id, kind, name) VALUES
        (v_id, 'topup', 'cash'), (v_id, 'topup', 'card'), (v_id, 'topup', 'online'),
        (v_id, 'fee', 'fees'), (v_id, 'payout', 'payout'), (v_id, 'deposit', 'deposit'), (v_id, 'donation', 'donation');
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION api.create_event IS 'Creates an event with its system accounts; amounts in cents. Returns the event id.';

CREATE OR REPLACE FUNCTION api.create_merchant(p_event_id bigint, p_name text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates a merchant of an event with its merchant account.
-- Returns the merchant id; raises not-found for an unknown event, validation for a bad or taken name.
DECLARE
    v_account bigint;
    v_id bigint;
BEGIN
    PERFORM FROM ledger.event WHERE id = p_event_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('event %s does not exist', p_event_id));
    END IF;
    BEGIN
        INSERT INTO ledger.account (event_id, kind, name) VALUES (p_event_id, 'merchant', p_name) RETURNING id INTO v_account;
        INSERT INTO ledger.merchant (event_id, name, account_id) VALUES (p_event_id, p_name, v_account) RETURNING id INTO v_id;
    EXCEPTION
        WHEN check_violation OR not_null_violation OR unique_violation THEN
            PERFORM ledger.fail('validation', format('merchant not valid: %s', SQLERRM), '{"field": "name"}');
    END;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION api.create_merchant IS 'Creates a merchant with its merchant account. Returns the merchant id.';

CREATE OR REPLACE FUNCTION api.create_position(p_event_id bigint, p_name text, p_kind text, p_merchant_id bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates a till place of an event: kind sale (for a merchant of the same event) or topup.
-- Returns the position id; raises validation or not-found.
DECLARE
    v_id bigint;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('sale', 'topup') THEN
        PERFORM ledger.fail('validation', 'kind must be sale or topup', '{"field": "kind"}');
    END IF;
    IF p_merchant_id IS NOT NULL AND NOT EXISTS (SELECT FROM ledger.merchant WHERE id = p_merchant_id AND event_id = p_event_id) THEN
        PERFORM ledger.fail('not-found', format('merchant %s does not belong to event %s', p_merchant_id, p_event_id));
    END IF;
    BEGIN
        INSERT INTO ledger.position (event_id, name, kind, merchant_id)
        VALUES (p_event_id, p_name, p_kind::ledger.position_kind, p_merchant_id) RETURNING id INTO v_id;
    EXCEPTION
        WHEN check_violation OR not_null_violation OR unique_violation OR foreign_key_violation THEN
            PERFORM ledger.fail('validation', format('position not valid: %s', SQLERRM));
    END;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION api.create_position IS 'Creates a position (sale for a merchant, or topup). Returns the position id.';

CREATE OR REPLACE FUNCTION api.create_product(p_event_id bigint, p_name text, p_price bigint, p_vat_rate numeric,
                                              p_fixed_price boolean DEFAULT true, p_returnable boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates a product: price in cents (NULL for a variable price), VAT rate in percent and one of the rates DSFinV-K
-- knows (ledger.vat_key: a receipt with any other rate could not be signed), returnable for deposit items.
-- Returns the product id; raises not-found, validation naming the field (name, price, vat_rate, returnable).
DECLARE
    v_currency text;
    v_rates text;
    v_constraint text;
    v_column text;
    v_id bigint;
BEGIN
    SELECT currency INTO v_currency FROM ledger.event WHERE id = p_event_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('event %s does not exist', p_event_id));
    END IF;
    IF p_price < 0 THEN
        PERFORM ledger.fail('validation', format('the price must be %s %s or more', ledger.money(0), v_currency),
                            '{"field": "price"}');
    ELSIF ledger.vat_key(p_vat_rate) IS NULL THEN
        -- The rates ledger.vat_key knows (all have at most two decimals), in the order of their keys.
        SELECT string_agg(trim_scale(r) || ' %', ', ' ORDER BY ledger.vat_key(r)) INTO v_rates
          FROM (SELECT n / 100.0 AS r FROM generate_series(0, 9999) n) x WHERE ledger.vat_key(r) IS NOT NULL;
        PERFORM ledger.fail('validation',
                            format('the VAT rate must be one of %s', regexp_replace(v_rates, ', ([^,]*)$', ' or \1')),
                            '{"field": "vat_rate"}');
    END IF;
    BEGIN
        INSERT INTO ledger.product (event_id, name, price, vat_rate, fixed_price, returnable)
        VALUES (p_event_id, p_name, p_price, p_vat_rate, p_fixed_price, p_returnable) RETURNING id INTO v_id;
    EXCEPTION
        WHEN unique_violation THEN
            PERFORM ledger.fail('validation', format('the name %s is taken', p_name), '{"field": "name"}');
        WHEN check_violation OR not_null_violation THEN
            GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME, v_column = COLUMN_NAME;
            IF v_constraint = 'fixed_price_has_a_price' THEN
                PERFORM ledger.fail('validation', 'a fixed-price product needs a price', '{"field": "price"}');
            ELSIF v_constraint = 'returnable_has_fixed_price' THEN
                PERFORM ledger.fail('validation', 'a returnable (deposit) product has a fixed price', '{"field": "returnable"}');
            ELSIF v_column IN ('fixed_price', 'returnable') THEN
                PERFORM ledger.fail('validation', 'say whether the price is fixed and whether the product is returnable',
                                    jsonb_build_object('field', v_column));
            END IF;
            PERFORM ledger.fail('validation', 'a name has 1 to 200 characters', '{"field": "name"}');
    END;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION api.create_product IS
    'Creates a product (price in cents, VAT in percent: one of the five rates DSFinV-K knows). Returns the product id.';

CREATE OR REPLACE FUNCTION api.create_registration_code(p_event_id bigint, p_position text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Makes a one-time code that registers one terminal for the named position of an event.
-- Returns the code (12 characters); raises not-found for an unknown position.
DECLARE
    v_position bigint;
    v_code text;
BEGIN
    SELECT id INTO v_position FROM ledger.position WHERE event_id = p_event_id AND name = p_position;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('event %s has no position %L', p_event_id, p_position));
    END IF;
    v_code := upper(substr(translate(encode(extensions.gen_random_bytes(15), 'base64'), '+/=0O1I', ''), 1, 12));
    WHILE length(v_code) < 12 LOOP
        v_code := v_code || upper(substr(encode(extensions.gen_random_bytes(4), 'hex'), 1, 12 - length(v_code)));
    END LOOP;
    INSERT INTO ledger.registration_code (code, event_id, position_id) VALUES (v_code, p_event_id, v_position);
    RETURN v_code;
END
$$;
COMMENT ON FUNCTION api.create_registration_code IS 'Makes a one-time terminal registration code for a position. Returns the code.';

CREATE OR REPLACE FUNCTION api.register_terminal(p_code text, p_device text,
    OUT assignment_id bigint, OUT event_id bigint, OUT secret text, OUT tag_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Registers a terminal with a one-time code: a new assignment with its own secret and cash drawer account.
-- Returns assignment id, event id, secret and tag key (base64); raises registration-code-invalid or validation.
DECLARE
    c ledger.registration_code;
    v_secret bytea := extensions.gen_random_bytes(32);
    v_drawer bigint;
BEGIN
    IF p_device IS NULL OR length(btrim(p_device)) NOT BETWEEN 1 AND 200 THEN
        PERFORM ledger.fail('validation', 'device must be 1 to 200 characters', '{"field": "device"}');
    END IF;
    SELECT * INTO c FROM ledger.registration_code WHERE code = upper(btrim(p_code)) FOR UPDATE;
    IF NOT FOUND OR c.used_at IS NOT NULL THEN
        PERFORM ledger.fail('registration-code-invalid', 'the registration code is unknown or already used');
    END IF;
    assignment_id := nextval(pg_get_serial_sequence('ledger.assignment', 'id'));
    INSERT INTO ledger.account (event_id, kind, name) VALUES (c.event_id, 'cash', 'drawer ' || assignment_id)
        RETURNING id INTO v_drawer;
    INSERT INTO ledger.assignment (id, event_id, position_id, device, secret, cash_account_id)
    VALUES (assignment_id, c.event_id, c.position_id, btrim(p_device), v_secret, v_drawer);
    UPDATE ledger.registration_code SET used_at = now(), assignment_id = register_terminal.assignment_id WHERE code = c.code;
    event_id := c.event_id;
    secret := encode(v_secret, 'base64');
    SELECT encode(e.tag_key, 'base64') INTO tag_key FROM ledger.event e WHERE e.id = c.event_id;
END
$$;
COMMENT ON FUNCTION api.register_terminal IS 'Registers a terminal with a one-time code. Returns assignment_id, event_id, secret and tag_key (base64).';

CREATE OR REPLACE FUNCTION api.terminal_secret(p_assignment_id bigint)
RETURNS bytea LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The HMAC key of a terminal assignment, for the gateway to check request signatures.
-- Returns the 32-byte secret, or NULL for an unknown assignment.
    SELECT secret FROM ledger.assignment WHERE id = p_assignment_id;
$$;
COMMENT ON FUNCTION api.terminal_secret IS 'The HMAC key of an assignment (NULL when unknown), for request signature checks.';

CREATE OR REPLACE FUNCTION api.terminal_config(p_assignment_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- What a terminal needs to sell: its event's settings, its position and the products that are not archived.
-- Returns the config document of GET /terminal/v1/config; raises not-found for an unknown assignment,
-- terminal-revoked for a revoked one.
DECLARE
    v jsonb;
BEGIN
    SELECT jsonb_build_object(
               'event', jsonb_build_object('id', e.id, 'name', e.name, 'currency', e.currency,
                   'reserve_timeout_s', extract(epoch FROM e.reserve_timeout)::integer, 'max_balance', e.max_balance,
                   'offline_limit', e.offline_limit, 'offline_log_size', e.offline_log_size),
               'position', jsonb_build_object('name', p.name, 'kind', p.kind, 'merchant_id', p.merchant_id),
               'products', coalesce((SELECT jsonb_agg(jsonb_build_object('id', pr.id, 'name', pr.name, 'price', pr.price,
                                         'vat_rate', pr.vat_rate, 'fixed_price', pr.fixed_price, 'returnable', pr.returnable)
                                         ORDER BY pr.id)
                                       FROM ledger.product pr WHERE pr.event_id = e.id AND NOT pr.archived), '[]'::jsonb),
               'server_time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
      INTO v
      FROM ledger.assignment a
      JOIN ledger.event e ON e.id = a.event_id
      JOIN ledger.position p ON p.id = a.position_id
     WHERE a.id = p_assignment_id AND a.revoked_at IS NULL;
    IF v IS NULL THEN
        PERFORM ledger.assignment_event(p_assignment_id);          -- raises not-found or terminal-revoked
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION api.terminal_config IS 'The configuration document of a terminal assignment (event, position, products not archived, server time).';

CREATE OR REPLACE FUNCTION api.create_tag(p_event_id bigint, p_uid text, p_pin text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Registers a wristband (status new) with its customer account; the PIN is stored as a bcrypt hash.
-- Returns the tag id; raises validation for a bad UID or a UID that exists already.
DECLARE
    v_tag ledger.tag;
BEGIN
    PERFORM FROM ledger.event WHERE id = p_event_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('event %s does not exist', p_event_id));
    END IF;
    IF EXISTS (SELECT FROM ledger.tag WHERE event_id = p_event_id AND uid = ledger.normalize_uid(p_uid)) THEN
        PERFORM ledger.fail('validation', format('tag %s exists already', ledger.normalize_uid(p_uid)), '{"field": "uid"}');
    END IF;
    v_tag := ledger.find_tag(p_event_id, p_uid, true);
    IF p_pin IS NOT NULL THEN
        UPDATE ledger.tag SET pin_hash = extensions.crypt(p_pin, extensions.gen_salt('bf', 8)) WHERE id = v_tag.id;
    END IF;
    RETURN v_tag.id;
END
$$;
COMMENT ON FUNCTION api.create_tag IS 'Registers a wristband (status new) with its customer account and hashed PIN. Returns the tag id.';

CREATE OR REPLACE FUNCTION api.set_tag_blocked(p_event_id bigint, p_uid text, p_blocked boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Blocks a tag (lost or stolen) or unblocks it; a blocked tag can neither reserve nor be refunded.
-- Returns the new status; raises not-found for an unknown tag.
DECLARE
    v_tag ledger.tag := ledger.find_tag(p_event_id, p_uid);
    v_status ledger.tag_status;
BEGIN
    UPDATE ledger.tag
       SET status = CASE WHEN p_blocked THEN 'blocked'
                         WHEN EXISTS (SELECT FROM ledger.booking b
                                       WHERE b.debit_account_id = v_tag.account_id OR b.credit_account_id = v_tag.account_id)
                         THEN 'active' ELSE 'new' END::ledger.tag_status
     WHERE id = v_tag.id
    RETURNING status INTO v_status;
    RETURN v_status::text;
END
$$;

CREATE OR REPLACE FUNCTION api.block_tag(p_event_id bigint, p_uid text)
RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Blocks a tag: it can no longer reserve, top up or be refunded.
-- Returns 'blocked'; raises not-found for an unknown tag.
    SELECT api.set_tag_blocked(p_event_id, p_uid, true);
$$;
COMMENT ON FUNCTION api.block_tag IS 'Blocks a tag (lost or stolen). Returns the new status.';

CREATE OR REPLACE FUNCTION api.unblock_tag(p_event_id bigint, p_uid text)
RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Unblocks a tag: active again when it has bookings, else new.
-- Returns the new status; raises not-found for an unknown tag.
    SELECT api.set_tag_blocked(p_event_id, p_uid, false);
$$;
COMMENT ON FUNCTION api.unblock_tag IS 'Unblocks a tag. Returns the new status (active, or new when it never had a booking).';
COMMENT ON FUNCTION api.set_tag_blocked IS 'Blocks or unblocks a tag; api.block_tag and api.unblock_tag delegate here. Returns the new status.';

CREATE OR REPLACE FUNCTION api.problem_types()
RETURNS TABLE (slug text, sqlstate text, http_status integer, title text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Lists the named errors the api functions raise (SQLSTATE class FP).
-- Returns one row per problem type.
    SELECT slug, sqlstate::text, http_status, title FROM ledger.problem ORDER BY sqlstate;
$$;
COMMENT ON FUNCTION api.problem_types IS 'The named errors of the api (SQLSTATE, slug, HTTP status, title).';
