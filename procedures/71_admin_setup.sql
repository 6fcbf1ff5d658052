SET LOCAL ROLE festpay_owner;

-- The admin site's setup pages: the event's settings, merchants, positions, products, terminals and the tag import,
-- all of the event the admin site runs (ledger.admin_event_id). Reading needs the privilege view, changing setup;
-- every change writes one ledger.admin_audit row with the object before and after. Creating delegates to the api.create_*
-- functions; archiving keeps what was sold (never deleted).

-- Dropped where it exists: ledger.admin_setting reads a form's setting, naming it in words.
DROP FUNCTION IF EXISTS ledger.admin_setting_int(jsonb, text, bigint, bigint, text);

CREATE OR REPLACE FUNCTION ledger.admin_setting(p_settings jsonb, p_key text, p_label text, p_min bigint, p_max bigint,
                                                p_event_id bigint DEFAULT NULL, p_unit text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
-- Reads the whole-number setting p_key of a form: a JSON number or a string of digits (what a form sends). Messages
-- call it p_label (plain words, e.g. 'the maximum balance'); with p_event_id it is an amount of money in cents, said
-- as a decimal amount in the event's currency (ledger.admin_money), else a number of p_unit.
-- Returns it; raises validation naming p_key when it is empty, not whole, or outside p_min .. p_max.
DECLARE
    v jsonb := p_settings -> p_key;
    v_text text := btrim(p_settings ->> p_key);
    n numeric;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' OR v_text = '' THEN
        PERFORM ledger.fail('validation', format('%s is required', p_label), jsonb_build_object('field', p_key));
    ELSIF jsonb_typeof(v) = 'number' OR (jsonb_typeof(v) = 'string' AND v_text ~ '^-?[0-9]{1,30}$') THEN
        n := v_text::numeric;
    END IF;
    IF n IS NULL OR n <> trunc(n) THEN
        PERFORM ledger.fail('validation', format('%s must be a whole number', p_label), jsonb_build_object('field', p_key));
    ELSIF p_event_id IS NOT NULL AND n < p_min THEN
        PERFORM ledger.fail('validation',
                            CASE p_min WHEN 0 THEN format('%s must be %s or more', p_label, ledger.admin_money(p_event_id, 0))
                                       WHEN 1 THEN format('%s must be more than %s', p_label, ledger.admin_money(p_event_id, 0))
                                       ELSE format('%s must be at least %s', p_label, ledger.admin_money(p_event_id, p_min)) END,
                            jsonb_build_object('field', p_key));
    ELSIF p_event_id IS NOT NULL AND n > p_max THEN
        PERFORM ledger.fail('validation', format('%s must be %s to %s', p_label, ledger.money(p_min),
                                                 ledger.admin_money(p_event_id, p_max)), jsonb_build_object('field', p_key));
    ELSIF n < p_min OR n > p_max THEN
        PERFORM ledger.fail('validation', format('%s must be %s to %s%s', p_label, p_min, p_max, ' ' || p_unit),
                            jsonb_build_object('field', p_key));
    END IF;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_event_json(p_event_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- The settings of an event as the event page shows and edits them (amounts in cents; never the tag key).
-- Returns a JSON object keyed by form field name, or NULL for an unknown event.
    SELECT jsonb_build_object(
               'id', e.id, 'name', e.name, 'currency', e.currency, 'time_zone', e.time_zone,
               'max_balance', e.max_balance, 'min_topup', e.min_topup, 'max_topup', e.max_topup,
               'topup_fee_cash', e.topup_fee_cash, 'topup_fee_card', e.topup_fee_card,
               'topup_fee_online', e.topup_fee_online, 'payout_fee', e.payout_fee,
               'reserve_timeout_s', extract(epoch FROM e.reserve_timeout)::integer,
               'provider_check_window_s', extract(epoch FROM e.provider_check_window)::integer,
               'offline_limit', e.offline_limit, 'offline_log_size', e.offline_log_size,
               'seller_name', e.seller_name, 'seller_street', e.seller_street, 'seller_postcode', e.seller_postcode,
               'seller_city', e.seller_city, 'tax_number', e.tax_number, 'vat_id', e.vat_id,
               'created_at', e.created_at,
               'payout_countries', to_jsonb(e.payout_countries), 'payout_deadline', e.payout_deadline,
               'payout_retention_days', extract(day FROM e.payout_retention)::integer,
               'payout_debtor_name', e.payout_debtor_name, 'payout_debtor_iban', e.payout_debtor_iban,
               'payout_debtor_bic', e.payout_debtor_bic)
      FROM ledger.event e WHERE e.id = p_event_id;
$$;

CREATE OR REPLACE FUNCTION ledger.admin_changes(p_action text, p_user_id bigint, p_object text, p_before jsonb,
                                                p_after jsonb)
RETURNS void LANGUAGE plpgsql AS $$
-- Audits a change of an object (ledger.admin_audit) with only the keys whose value changed, before and after; a
-- creation (p_before NULL) with the whole object. Writes nothing when nothing changed.
-- Returns nothing.
DECLARE
    v_before jsonb;
    v_after jsonb;
BEGIN
    IF p_before IS NULL THEN
        PERFORM ledger.admin_audit(p_user_id, p_action, p_object, NULL, p_after);
        RETURN;
    END IF;
    SELECT jsonb_object_agg(k, p_before -> k), jsonb_object_agg(k, p_after -> k) INTO v_before, v_after
      FROM (SELECT jsonb_object_keys(p_before) UNION SELECT jsonb_object_keys(p_after)) x(k)
     WHERE p_before -> k IS DISTINCT FROM p_after -> k;
    IF v_after IS NOT NULL THEN
        PERFORM ledger.admin_audit(p_user_id, p_action, p_object, v_before, v_after);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_name(p_name text, p_taken boolean)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks the name of a merchant, position or product from a form: 1 to 200 characters after trimming, not taken.
-- Returns it trimmed; raises validation (field name).
DECLARE
    v text := btrim(p_name);
BEGIN
    IF v IS NULL OR length(v) NOT BETWEEN 1 AND 200 THEN
        PERFORM ledger.fail('validation', 'a name has 1 to 200 characters', '{"field": "name"}');
    ELSIF p_taken THEN
        PERFORM ledger.fail('validation', format('the name %s is taken', v), '{"field": "name"}');
    END IF;
    RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_uid(p_uid text, p_field text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks a tag UID from a form with the ledger's own rule (ledger.normalize_uid), saying it in plain words.
-- Returns the UID normalised; raises validation naming the form field p_field.
BEGIN
    RETURN ledger.normalize_uid(p_uid);
EXCEPTION WHEN SQLSTATE 'FP001' THEN
    PERFORM ledger.fail('validation', CASE WHEN coalesce(btrim(p_uid), '') = '' THEN 'enter a tag UID: 8 to 20 hex digits'
                                           ELSE format('%L is no tag UID: a tag UID is 8 to 20 hex digits', p_uid) END,
                        jsonb_build_object('field', p_field));
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_payout_settings(p_settings jsonb, p_event_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
-- Reads the payout settings a form gives (only the keys present): payout_countries (a JSON array of ISO codes, or a
-- text "DE, AT"), payout_deadline (RFC 3339, or a local date and time in the event's time zone; empty or null: none),
-- payout_debtor_name (at most 70 characters), payout_debtor_iban (an IBAN, ledger.iban_check; empty: not set) and
-- payout_debtor_bic (8 or 11 characters; empty: not given), trimmed and upper-cased where codes.
-- Returns them as a JSON object keyed like ledger.admin_event_json; raises validation naming the field.
DECLARE
    v jsonb := '{}';
    v_list jsonb := p_settings -> 'payout_countries';
    v_codes text[];
    v_text text;
    v_tz text;
BEGIN
    IF p_settings ? 'payout_countries' THEN
        IF jsonb_typeof(v_list) = 'string' THEN
            v_codes := regexp_split_to_array(upper(btrim(v_list #>> '{}', ' ,;')), '[\s,;]+');
            v_codes := CASE WHEN v_codes = ARRAY[''] THEN '{}' ELSE v_codes END;
        ELSIF jsonb_typeof(v_list) = 'array'
              AND NOT jsonb_path_exists(v_list, '$[*] ? (@.type() != "string")') THEN
            v_codes := ARRAY(SELECT upper(btrim(x)) FROM jsonb_array_elements_text(v_list) x);
        ELSE
            PERFORM ledger.fail('validation', 'the payout countries must be a list of country codes',
                                '{"field": "payout_countries"}');
        END IF;
        SELECT x INTO v_text FROM unnest(v_codes) x WHERE x !~ '^[A-Z]{2}$' LIMIT 1;
        IF FOUND THEN
            PERFORM ledger.fail('validation', format('%L is no country code: two letters, e.g. DE, AT', v_text),
                                '{"field": "payout_countries"}');
        END IF;
        v := v || jsonb_build_object('payout_countries',
                                     (SELECT coalesce(jsonb_agg(c ORDER BY n), '[]')
                                        FROM (SELECT c, min(n) AS n FROM unnest(v_codes) WITH ORDINALITY u(c, n) GROUP BY c) d));
    END IF;
    IF p_settings ? 'payout_deadline' THEN
        v_text := btrim(p_settings ->> 'payout_deadline');
        IF coalesce(v_text, '') = '' THEN
            v := v || '{"payout_deadline": null}';
        ELSE
            SELECT e.time_zone INTO v_tz FROM ledger.event e WHERE e.id = p_event_id;
            IF jsonb_typeof(p_settings -> 'payout_deadline') <> 'string'
               OR v_text !~ '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})?$' THEN
                PERFORM ledger.fail('validation', 'the payout deadline must be a time like 2026-07-20 18:00',
                                    '{"field": "payout_deadline"}');
            END IF;
            BEGIN
                v := v || jsonb_build_object('payout_deadline',
                                             CASE WHEN v_text ~ '([Zz]|[+-]\d{2}:\d{2})$' THEN v_text::timestamptz
                                                  ELSE v_text::timestamp AT TIME ZONE v_tz END);
            EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
                PERFORM ledger.fail('validation', format('the payout deadline %s is not a possible time', v_text),
                                    '{"field": "payout_deadline"}');
            END;
        END IF;
    END IF;
    IF p_settings ? 'payout_debtor_name' THEN
        v_text := coalesce(btrim(p_settings ->> 'payout_debtor_name'), '');
        IF length(v_text) > 70 THEN
            PERFORM ledger.fail('validation', 'the account holder''s name has at most 70 characters',
                                '{"field": "payout_debtor_name"}');
        END IF;
        v := v || jsonb_build_object('payout_debtor_name', v_text);
    END IF;
    IF p_settings ? 'payout_debtor_iban' THEN
        v_text := coalesce(btrim(p_settings ->> 'payout_debtor_iban'), '');
        v := v || jsonb_build_object('payout_debtor_iban',
                                     CASE WHEN v_text = '' THEN '' ELSE ledger.iban_check(v_text, NULL, 'payout_debtor_iban') END);
    END IF;
    IF p_settings ? 'payout_debtor_bic' THEN
        v_text := upper(replace(coalesce(btrim(p_settings ->> 'payout_debtor_bic'), ''), ' ', ''));
        IF v_text !~ '^([A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?)?$' THEN
            PERFORM ledger.fail('validation', format('%L is no BIC: 8 or 11 letters and digits, e.g. COBADEFFXXX', v_text),
                                '{"field": "payout_debtor_bic"}');
        END IF;
        v := v || jsonb_build_object('payout_debtor_bic', v_text);
    END IF;
    RETURN v;
END
$$;

CREATE OR REPLACE FUNCTION api.admin_event(p_token text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The settings of the event the admin site runs (privilege view).
-- Returns ledger.admin_event_json; raises admin-unauthenticated, admin-forbidden, not-found (no event yet).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
BEGIN
    RETURN ledger.admin_event_json(ledger.admin_event_id());
END
$$;
COMMENT ON FUNCTION api.admin_event IS
    'The event''s settings: limits, fees (cents), reserve timeout, online payment check window, offline limits, seller, '
    'payouts (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_event_update(p_token text, p_settings jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Changes the event's settings (privilege setup): the keys given of max_balance, min_topup, max_topup, the top-up
-- fees, payout_fee, reserve_timeout_s, provider_check_window_s (how long the relay waits for the payment provider's
-- answer to an online top-up before it is ExternalUnknown), offline_limit, offline_log_size, payout_retention_days
-- (whole numbers, cents, seconds, days), the seller (name, street, postcode, city, tax number, VAT id: through
-- api.set_seller, when one of them changes) and the payouts (ledger.admin_payout_settings: countries, deadline, the
-- festival's account). Audited.
-- Returns the settings after; raises admin-unauthenticated, admin-forbidden, validation naming the field.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'setup');
    v_id bigint := ledger.admin_event_id();
    v_before jsonb := ledger.admin_event_json(v_id);
    v jsonb := v_before;
    v_key text;
    v_constraint text;
    v_field text;
    -- setting, what it is called, least, greatest, unit (money: cents, said in the event's currency)
    v_rules CONSTANT jsonb := '[["max_balance", "the maximum balance", 1, 9007199254740991, "money"],
                                ["min_topup", "the minimum top-up", 1, 9007199254740991, "money"],
                                ["max_topup", "the maximum top-up", 1, 9007199254740991, "money"],
                                ["topup_fee_cash", "the cash top-up fee", 0, 9007199254740991, "money"],
                                ["topup_fee_card", "the card top-up fee", 0, 9007199254740991, "money"],
                                ["topup_fee_online", "the online top-up fee", 0, 9007199254740991, "money"],
                                ["payout_fee", "the payout fee", 0, 9007199254740991, "money"],
                                ["reserve_timeout_s", "the reserve timeout", 1, 86400, "seconds"],
                                ["provider_check_window_s", "the online payment check window", 1, 604800, "seconds"],
                                ["offline_limit", "the offline limit", 0, 9007199254740991, "money"],
                                ["offline_log_size", "the offline log size", 1, 255, "entries"],
                                ["payout_retention_days", "the retention of bank data", 0, 3650, "days"]]';
    v_seller CONSTANT text[] := ARRAY['seller_name', 'seller_street', 'seller_postcode', 'seller_city', 'tax_number', 'vat_id'];
    v_payout CONSTANT text[] := ARRAY['payout_countries', 'payout_deadline', 'payout_debtor_name', 'payout_debtor_iban',
                                      'payout_debtor_bic'];
    r jsonb;
BEGIN
    IF p_settings IS NULL OR jsonb_typeof(p_settings) <> 'object' THEN
        PERFORM ledger.fail('validation', 'the settings must be a JSON object', '{"field": "settings"}');
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_settings) LOOP
        IF NOT (v_key = ANY (v_seller) OR v_key = ANY (v_payout)
                OR jsonb_path_exists(v_rules, '$[*] ? (@[0] == $k)', jsonb_build_object('k', v_key))) THEN
            PERFORM ledger.fail('validation', format('the event has no setting %L', v_key), jsonb_build_object('field', v_key));
        END IF;
    END LOOP;
    FOR r IN SELECT jsonb_array_elements(v_rules) LOOP
        IF p_settings ? (r ->> 0) THEN
            v := v || jsonb_build_object(r ->> 0, ledger.admin_setting(p_settings, r ->> 0, r ->> 1, (r ->> 2)::bigint,
                                                                       (r ->> 3)::bigint,
                                                                       CASE WHEN r ->> 4 = 'money' THEN v_id END,
                                                                       nullif(r ->> 4, 'money')));
        END IF;
    END LOOP;
    v := v || ledger.admin_payout_settings(p_settings, v_id);
    BEGIN
        UPDATE ledger.event
           SET max_balance = (v ->> 'max_balance')::bigint, min_topup = (v ->> 'min_topup')::bigint,
               max_topup = (v ->> 'max_topup')::bigint, topup_fee_cash = (v ->> 'topup_fee_cash')::bigint,
               topup_fee_card = (v ->> 'topup_fee_card')::bigint, topup_fee_online = (v ->> 'topup_fee_online')::bigint,
               payout_fee = (v ->> 'payout_fee')::bigint,
               reserve_timeout = make_interval(secs => (v ->> 'reserve_timeout_s')::integer),
               provider_check_window = make_interval(secs => (v ->> 'provider_check_window_s')::integer),
               offline_limit = (v ->> 'offline_limit')::bigint, offline_log_size = (v ->> 'offline_log_size')::integer,
               payout_countries = ARRAY(SELECT jsonb_array_elements_text(v -> 'payout_countries')),
               payout_deadline = (v ->> 'payout_deadline')::timestamptz,
               payout_retention = make_interval(days => (v ->> 'payout_retention_days')::integer),
               payout_debtor_name = v ->> 'payout_debtor_name', payout_debtor_iban = v ->> 'payout_debtor_iban',
               payout_debtor_bic = v ->> 'payout_debtor_bic'
         WHERE id = v_id;
    EXCEPTION WHEN check_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'topup_bounds' THEN
            PERFORM ledger.fail('validation',
                                format('the maximum top-up must be at least the minimum top-up (%s) and at most the maximum '
                                       'balance (%s)', ledger.admin_money(v_id, (v ->> 'min_topup')::bigint),
                                       ledger.admin_money(v_id, (v ->> 'max_balance')::bigint)),
                                '{"field": "max_topup"}');
        ELSIF v_constraint = 'fees_below_min_topup' THEN
            SELECT f INTO v_field FROM unnest(ARRAY['topup_fee_cash', 'topup_fee_card', 'topup_fee_online']) f
             WHERE (v ->> f)::bigint >= (v ->> 'min_topup')::bigint LIMIT 1;
            PERFORM ledger.fail('validation', format('a top-up fee must be below the minimum top-up (%s)',
                                                     ledger.admin_money(v_id, (v ->> 'min_topup')::bigint)),
                                jsonb_build_object('field', v_field));
        END IF;
        PERFORM ledger.fail('validation', 'these settings do not fit together', '{"field": "settings"}');
    END;
    -- The seller goes through api.set_seller (its rules: name, street, postcode and city all given), when it changes.
    FOREACH v_key IN ARRAY v_seller LOOP
        IF p_settings ? v_key AND jsonb_typeof(p_settings -> v_key) NOT IN ('string', 'null') THEN
            PERFORM ledger.fail('validation',
                                format('%s must be text', '{"seller_name": "the seller''s name", "seller_street": "the street",
                                                            "seller_postcode": "the postcode", "seller_city": "the city",
                                                            "tax_number": "the tax number", "vat_id": "the VAT id"}'::jsonb
                                                          ->> v_key),
                                jsonb_build_object('field', v_key));
        END IF;
        IF p_settings ? v_key THEN
            v := v || jsonb_build_object(v_key, coalesce(btrim(p_settings ->> v_key), ''));
        END IF;
    END LOOP;
    IF EXISTS (SELECT FROM unnest(v_seller) k WHERE v -> k IS DISTINCT FROM v_before -> k) THEN
        IF length(v ->> 'seller_name') > 200 THEN
            PERFORM ledger.fail('validation', 'the seller''s name has at most 200 characters', '{"field": "seller_name"}');
        END IF;
        PERFORM api.set_seller(v_id, v ->> 'seller_name', v ->> 'seller_street', v ->> 'seller_postcode',
                               v ->> 'seller_city', v ->> 'tax_number', v ->> 'vat_id');
    END IF;
    v := ledger.admin_event_json(v_id);
    PERFORM ledger.admin_changes('event.update', u.id, 'event:' || v_id, v_before, v);
    RETURN v;
END
$$;
COMMENT ON FUNCTION api.admin_event_update IS
    'Changes the event''s limits, fees, reserve timeout, offline limits, seller and payout settings (privilege setup). '
    'Returns the settings after.';

CREATE OR REPLACE FUNCTION ledger.admin_merchant_json(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- A merchant as the audit log shows it. Returns {id, name, archived}, or NULL when there is none.
    SELECT jsonb_build_object('id', m.id, 'name', m.name, 'archived', m.archived) FROM ledger.merchant m WHERE m.id = p_id;
$$;

CREATE OR REPLACE FUNCTION api.admin_merchants(p_token text)
RETURNS TABLE (id bigint, name text, archived boolean, positions integer, sales bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The merchants of the event (privilege view), archived ones too, with how many positions sell for each and its
-- sales: what its account received less what it paid back (chargebacks), in cents.
-- Returns one row per merchant by name; raises admin-unauthenticated, admin-forbidden, not-found (no event).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
BEGIN
    RETURN QUERY
    SELECT m.id, m.name, m.archived,
           (SELECT count(*)::integer FROM ledger.position p WHERE p.merchant_id = m.id),
           coalesce((SELECT sum(b.amount) FROM ledger.booking b WHERE b.debit_account_id = m.account_id), 0)::bigint
           - coalesce((SELECT sum(b.amount) FROM ledger.booking b WHERE b.credit_account_id = m.account_id), 0)::bigint
      FROM ledger.merchant m
     WHERE m.event_id = ledger.admin_event_id()
     ORDER BY m.name;
END
$$;
COMMENT ON FUNCTION api.admin_merchants IS 'The event''s merchants with archived, positions and sales in cents (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_merchant_save(p_token text, p_id bigint, p_name text, p_archived boolean)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates (p_id NULL, through api.create_merchant) or renames and archives / unarchives a merchant (privilege setup);
-- its account keeps the merchant's name. Audited.
-- Returns the merchant id; raises admin-unauthenticated, admin-forbidden, validation (field name), not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'setup');
    v_event bigint := ledger.admin_event_id();
    v_before jsonb := ledger.admin_merchant_json(p_id);
    v_name text := ledger.admin_name(p_name, EXISTS (SELECT FROM ledger.merchant m WHERE m.event_id = v_event
                                                         AND m.name = btrim(p_name) AND m.id IS DISTINCT FROM p_id));
    v_id bigint := p_id;
BEGIN
    IF p_id IS NULL THEN
        v_id := api.create_merchant(v_event, v_name);
    ELSIF NOT EXISTS (SELECT FROM ledger.merchant m WHERE m.id = p_id AND m.event_id = v_event) THEN
        PERFORM ledger.fail('not-found', format('merchant %s does not exist', p_id));
    ELSE
        UPDATE ledger.account a SET name = v_name FROM ledger.merchant m WHERE m.id = p_id AND a.id = m.account_id;
    END IF;
    UPDATE ledger.merchant m SET name = v_name, archived = coalesce(p_archived, m.archived) WHERE m.id = v_id;
    PERFORM ledger.admin_changes(CASE WHEN p_id IS NULL THEN 'merchant.create' ELSE 'merchant.update' END, u.id,
                                 'merchant:' || v_id, v_before, ledger.admin_merchant_json(v_id));
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION api.admin_merchant_save IS 'Creates or changes (name, archived) a merchant (privilege setup). Returns its id.';

CREATE OR REPLACE FUNCTION ledger.admin_position_json(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- A position as the audit log shows it. Returns {id, name, kind, merchant_id, archived}, or NULL when there is none.
    SELECT jsonb_build_object('id', p.id, 'name', p.name, 'kind', p.kind, 'merchant_id', p.merchant_id,
                              'archived', p.archived)
      FROM ledger.position p WHERE p.id = p_id;
$$;

CREATE OR REPLACE FUNCTION api.admin_positions(p_token text)
RETURNS TABLE (id bigint, name text, kind text, merchant_id bigint, merchant text, archived boolean, terminals integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The positions of the event (privilege view), archived ones too, with their merchant and how many terminals are
-- registered there and not revoked. archived: the position or its merchant is archived (either way it sells nothing
-- new and gets no registration code).
-- Returns one row per position by name; raises admin-unauthenticated, admin-forbidden, not-found (no event).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
BEGIN
    RETURN QUERY
    SELECT p.id, p.name, p.kind::text, p.merchant_id, m.name, p.archived OR coalesce(m.archived, false),
           (SELECT count(*)::integer FROM ledger.assignment a WHERE a.position_id = p.id AND a.revoked_at IS NULL)
      FROM ledger.position p LEFT JOIN ledger.merchant m ON m.id = p.merchant_id
     WHERE p.event_id = ledger.admin_event_id()
     ORDER BY p.name;
END
$$;
COMMENT ON FUNCTION api.admin_positions IS
    'The event''s positions with kind, merchant, archived (itself or its merchant) and active terminals (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_position_save(p_token text, p_id bigint, p_name text, p_kind text,
                                                   p_merchant_id bigint, p_archived boolean)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates (p_id NULL, through api.create_position) or changes a position (privilege setup): kind sale with a merchant
-- of the event that is not archived, or topup without a merchant; a position with registered terminals keeps its
-- kind. api.admin_positions lists a position of an archived merchant as archived: saving that back keeps the
-- position's own flag (it is active again when its merchant is). Audited.
-- Returns the position id; raises admin-unauthenticated, admin-forbidden, validation (field name, kind or
-- merchant_id), not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'setup');
    v_event bigint := ledger.admin_event_id();
    v_before jsonb := ledger.admin_position_json(p_id);
    v_name text := ledger.admin_name(p_name, EXISTS (SELECT FROM ledger.position p WHERE p.event_id = v_event
                                                         AND p.name = btrim(p_name) AND p.id IS DISTINCT FROM p_id));
    v_merchant bigint := p_merchant_id;
    v_archived boolean := p_archived;
    v_id bigint := p_id;
BEGIN
    IF p_id IS NOT NULL AND NOT EXISTS (SELECT FROM ledger.position p WHERE p.id = p_id AND p.event_id = v_event) THEN
        PERFORM ledger.fail('not-found', format('position %s does not exist', p_id));
    END IF;
    IF p_kind IS NULL OR p_kind NOT IN ('sale', 'topup') THEN
        PERFORM ledger.fail('validation', 'kind must be sale or topup', '{"field": "kind"}');
    END IF;
    IF p_kind = 'topup' AND v_merchant IS NOT NULL THEN
        PERFORM ledger.fail('validation', 'a top-up position has no merchant', '{"field": "merchant_id"}');
    ELSIF p_kind = 'sale' AND v_merchant IS NULL THEN
        PERFORM ledger.fail('validation', 'a sale position needs a merchant', '{"field": "merchant_id"}');
    ELSIF p_kind = 'sale' AND NOT EXISTS (SELECT FROM ledger.merchant m WHERE m.id = v_merchant AND m.event_id = v_event) THEN
        PERFORM ledger.fail('validation', format('merchant %s does not exist', v_merchant), '{"field": "merchant_id"}');
    ELSIF p_kind = 'sale' AND v_merchant IS DISTINCT FROM (v_before ->> 'merchant_id')::bigint
          AND EXISTS (SELECT FROM ledger.merchant m WHERE m.id = v_merchant AND m.archived) THEN
        PERFORM ledger.fail('validation', 'that merchant is archived', '{"field": "merchant_id"}');
    END IF;
    IF p_kind IS DISTINCT FROM v_before ->> 'kind' AND EXISTS (SELECT FROM ledger.assignment a WHERE a.position_id = p_id) THEN
        PERFORM ledger.fail('validation', 'a position with registered terminals keeps its kind', '{"field": "kind"}');
    END IF;
    IF v_archived AND NOT (v_before ->> 'archived')::boolean AND v_merchant = (v_before ->> 'merchant_id')::bigint
       AND EXISTS (SELECT FROM ledger.merchant m WHERE m.id = v_merchant AND m.archived) THEN
        v_archived := false;                         -- archived by its merchant, as the list showed it
    END IF;
    IF p_id IS NULL THEN
        v_id := api.create_position(v_event, v_name, p_kind, v_merchant);
    END IF;
    UPDATE ledger.position p
       SET name = v_name, kind = p_kind::ledger.position_kind, merchant_id = v_merchant,
           archived = coalesce(v_archived, p.archived)
     WHERE p.id = v_id;
    PERFORM ledger.admin_changes(CASE WHEN p_id IS NULL THEN 'position.create' ELSE 'position.update' END, u.id,
                                 'position:' || v_id, v_before, ledger.admin_position_json(v_id));
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION api.admin_position_save IS
    'Creates or changes (name, kind, merchant, archived) a position (privilege setup). Returns its id.';

CREATE OR REPLACE FUNCTION ledger.admin_product_json(p_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- A product as the audit log shows it. Returns {id, name, price, vat_rate, fixed_price, returnable, archived}, or
-- NULL when there is none.
    SELECT jsonb_build_object('id', p.id, 'name', p.name, 'price', p.price, 'vat_rate', p.vat_rate,
                              'fixed_price', p.fixed_price, 'returnable', p.returnable, 'archived', p.archived)
      FROM ledger.product p WHERE p.id = p_id;
$$;

CREATE OR REPLACE FUNCTION api.admin_products(p_token text)
RETURNS TABLE (id bigint, name text, price bigint, vat_rate numeric, fixed_price boolean, returnable boolean,
               archived boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The products of the event (privilege view), archived ones too: price in cents (NULL: variable), VAT in percent.
-- Returns one row per product by name; raises admin-unauthenticated, admin-forbidden, not-found (no event).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
BEGIN
    RETURN QUERY
    SELECT p.id, p.name, p.price, p.vat_rate, p.fixed_price, p.returnable, p.archived
      FROM ledger.product p
     WHERE p.event_id = ledger.admin_event_id()
     ORDER BY p.name;
END
$$;
COMMENT ON FUNCTION api.admin_products IS 'The event''s products with price (cents), VAT, fixed price, returnable, archived (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_product_save(p_token text, p_id bigint, p_name text, p_price bigint,
                                                  p_vat_rate numeric, p_fixed_price boolean, p_returnable boolean,
                                                  p_archived boolean)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates (p_id NULL, through api.create_product) or changes a product (privilege setup): price in cents (NULL only
-- for a variable price), VAT rate in percent, one of the rates DSFinV-K knows (ledger.vat_key), a returnable (deposit)
-- product has a fixed price. Items sold keep the name, price and VAT rate they were sold with. Audited.
-- Returns the product id; raises admin-unauthenticated, admin-forbidden, validation (field name, price, vat_rate,
-- returnable), not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'setup');
    v_event bigint := ledger.admin_event_id();
    v_before jsonb := ledger.admin_product_json(p_id);
    v_name text := ledger.admin_name(p_name, EXISTS (SELECT FROM ledger.product p WHERE p.event_id = v_event
                                                         AND p.name = btrim(p_name) AND p.id IS DISTINCT FROM p_id));
    v_fixed boolean := coalesce(p_fixed_price, true);
    v_returnable boolean := coalesce(p_returnable, false);
    v_rates text;
    v_id bigint := p_id;
BEGIN
    IF p_id IS NOT NULL AND NOT EXISTS (SELECT FROM ledger.product p WHERE p.id = p_id AND p.event_id = v_event) THEN
        PERFORM ledger.fail('not-found', format('product %s does not exist', p_id));
    END IF;
    IF p_price < 0 THEN
        PERFORM ledger.fail('validation', format('the price must be %s or more', ledger.admin_money(v_event, 0)),
                            '{"field": "price"}');
    ELSIF p_price > 9007199254740991 THEN
        PERFORM ledger.fail('validation', format('the price must be %s to %s', ledger.money(0),
                                                 ledger.admin_money(v_event, 9007199254740991)), '{"field": "price"}');
    ELSIF p_price IS NULL AND v_fixed THEN
        PERFORM ledger.fail('validation', 'a fixed-price product needs a price', '{"field": "price"}');
    ELSIF ledger.vat_key(p_vat_rate) IS NULL THEN
        -- The rates ledger.vat_key knows (all have at most two decimals), in the order of their keys.
        SELECT string_agg(trim_scale(r) || ' %', ', ' ORDER BY ledger.vat_key(r)) INTO v_rates
          FROM (SELECT n / 100.0 AS r FROM generate_series(0, 9999) n) x WHERE ledger.vat_key(r) IS NOT NULL;
        PERFORM ledger.fail('validation',
                            format('the VAT rate must be one of %s', regexp_replace(v_rates, ', ([^,]*)$', ' or \1')),
                            '{"field": "vat_rate"}');
    ELSIF v_returnable AND NOT v_fixed THEN
        PERFORM ledger.fail('validation', 'a returnable (deposit) product has a fixed price', '{"field": "returnable"}');
    END IF;
    IF p_id IS NULL THEN
        v_id := api.create_product(v_event, v_name, p_price, p_vat_rate, v_fixed, v_returnable);
    END IF;
    UPDATE ledger.product p
       SET name = v_name, price = p_price, vat_rate = p_vat_rate, fixed_price = v_fixed, returnable = v_returnable,
           archived = coalesce(p_archived, p.archived)
     WHERE p.id = v_id;
    PERFORM ledger.admin_changes(CASE WHEN p_id IS NULL THEN 'product.create' ELSE 'product.update' END, u.id,
                                 'product:' || v_id, v_before, ledger.admin_product_json(v_id));
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION api.admin_product_save IS
    'Creates or changes (name, price, VAT, fixed price, returnable, archived) a product (privilege setup). Returns its id.';

CREATE OR REPLACE FUNCTION api.admin_terminals(p_token text)
RETURNS TABLE (assignment_id bigint, device text, "position" text, registered_at timestamptz, last_seen timestamptz,
               open_transactions integer, revoked_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The terminal assignments of the event (privilege view), revoked ones too: device, position, when registered, when
-- last seen (registration, or the last change of its newest transaction), how many of its transactions hold money
-- now (ReservePending, Reserve, TerminalConfirmUnknown), when revoked.
-- Returns one row per assignment, newest first; raises admin-unauthenticated, admin-forbidden, not-found (no event).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
BEGIN
    RETURN QUERY
    WITH open_tx AS (
        SELECT t.assignment_id AS id, count(*)::integer AS n FROM ledger.transaction t
         WHERE t.event_id = v_event AND ledger.holds(t.state) AND t.assignment_id IS NOT NULL
         GROUP BY t.assignment_id)
    SELECT a.id, a.device, p.name, a.registered_at, greatest(a.registered_at, l.at), coalesce(o.n, 0), a.revoked_at
      FROM ledger.assignment a
      JOIN ledger.position p ON p.id = a.position_id
      LEFT JOIN LATERAL (SELECT greatest(t.created_at, t.updated_at) AS at FROM ledger.transaction t
                          WHERE t.assignment_id = a.id ORDER BY t.terminal_tx_number DESC LIMIT 1) l ON true
      LEFT JOIN open_tx o ON o.id = a.id
     WHERE a.event_id = v_event
     ORDER BY a.id DESC;
END
$$;
COMMENT ON FUNCTION api.admin_terminals IS
    'The event''s terminal assignments: device, position, registered, last seen, open transactions, revoked (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_registration_code(p_token text, p_position_id bigint)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Makes a one-time terminal registration code for a position of the event (privilege setup), through
-- api.create_registration_code, unless the position or its merchant is archived. Audited (without the code).
-- Returns the code; raises admin-unauthenticated, admin-forbidden, not-found, archived (detail field position_id).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'setup');
    v_event bigint := ledger.admin_event_id();
    p ledger.position;
    v_merchant text;
    v_code text;
BEGIN
    SELECT * INTO p FROM ledger.position x WHERE x.id = p_position_id AND x.event_id = v_event;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('position %s does not exist', p_position_id), '{"field": "position_id"}');
    ELSIF p.archived THEN
        PERFORM ledger.fail('archived', format('position %s is archived', p.name), '{"field": "position_id"}');
    END IF;
    SELECT m.name INTO v_merchant FROM ledger.merchant m WHERE m.id = p.merchant_id AND m.archived;
    IF FOUND THEN
        PERFORM ledger.fail('archived', format('the merchant %s of position %s is archived: a terminal there could not sell',
                                               v_merchant, p.name),
                            '{"field": "position_id"}');
    END IF;
    v_code := api.create_registration_code(v_event, p.name);
    PERFORM ledger.admin_audit(u.id, 'registration-code.create', 'position:' || p.id, NULL,
                               jsonb_build_object('position_id', p.id, 'position', p.name));
    RETURN v_code;
END
$$;
COMMENT ON FUNCTION api.admin_registration_code IS 'Makes a one-time terminal registration code for a position (privilege setup).';

CREATE OR REPLACE FUNCTION api.admin_terminal_revoke(p_token text, p_assignment_id bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Revokes a terminal assignment of the event (privilege setup): every later call of that terminal is refused with
-- terminal-revoked. Audited; revoking a revoked one changes nothing.
-- Returns nothing; raises admin-unauthenticated, admin-forbidden, not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'setup');
    a ledger.assignment;
BEGIN
    SELECT * INTO a FROM ledger.assignment x WHERE x.id = p_assignment_id AND x.event_id = ledger.admin_event_id()
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('terminal %s does not exist', p_assignment_id));
    ELSIF a.revoked_at IS NULL THEN
        UPDATE ledger.assignment SET revoked_at = now() WHERE id = a.id;
        PERFORM ledger.admin_audit(u.id, 'terminal.revoke', 'assignment:' || a.id,
                                   jsonb_build_object('device', a.device, 'revoked_at', NULL),
                                   jsonb_build_object('device', a.device, 'revoked_at', now()));
    END IF;
END
$$;
COMMENT ON FUNCTION api.admin_terminal_revoke IS 'Revokes a terminal assignment: its next call is refused (privilege setup).';

CREATE OR REPLACE FUNCTION api.admin_tags(p_token text)
RETURNS TABLE (status text, count bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- How many tags of the event are new, active and blocked (privilege view).
-- Returns one row per status (0 included); raises admin-unauthenticated, admin-forbidden, not-found (no event).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'view');
    v_event bigint := ledger.admin_event_id();
BEGIN
    RETURN QUERY
    SELECT s::text, (SELECT count(*) FROM ledger.tag t WHERE t.event_id = v_event AND t.status = s)
      FROM unnest(enum_range(NULL::ledger.tag_status)) s;
END
$$;
COMMENT ON FUNCTION api.admin_tags IS 'How many of the event''s tags are new, active, blocked (privilege view).';

CREATE OR REPLACE FUNCTION api.admin_tags_import(p_token text, p_csv text)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Imports wristbands (privilege setup): one UID,PIN a line (comma or semicolon, optional quotes; a first line that
-- does not start with a UID is a header; blank lines are skipped), each through api.create_tag (status new, PIN
-- hashed). All or nothing. Audited (how many, first and last UID).
-- Returns how many tags it created; raises admin-unauthenticated, admin-forbidden, validation (field csv, the
-- message starting "line N: ").
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'setup');
    v_event bigint := ledger.admin_event_id();
    v_lines text[];
    v_line text;
    v_fields text[];
    v_no integer := 0;
    v_header_seen boolean := false;
    v_count integer := 0;
    v_first text;
    v_last text;
    v_message text;
BEGIN
    IF p_csv IS NULL OR length(p_csv) > 10000000 THEN
        PERFORM ledger.fail('validation', 'the file must have at most 10 MB', '{"field": "csv"}');
    END IF;
    v_lines := regexp_split_to_array(p_csv, E'\r\n|\r|\n');
    IF array_length(v_lines, 1) > 200000 THEN
        PERFORM ledger.fail('validation', 'the file must have at most 200000 lines', '{"field": "csv"}');
    END IF;
    BEGIN
        FOREACH v_line IN ARRAY v_lines LOOP
            v_no := v_no + 1;
            v_line := btrim(v_line, E' \t\uFEFF');
            CONTINUE WHEN v_line = '';
            v_fields := ARRAY(SELECT btrim(f, E' \t"') FROM regexp_split_to_table(v_line, '[,;]') f);
            IF NOT v_header_seen AND v_count = 0 AND upper(translate(v_fields[1], ': ', '')) !~ '^[0-9A-F]+$' THEN
                v_header_seen := true;                  -- the header line
                CONTINUE;
            END IF;
            v_header_seen := true;
            IF cardinality(v_fields) <> 2 THEN
                PERFORM ledger.fail('validation', format('expected UID,PIN but found %s fields', cardinality(v_fields)));
            ELSIF v_fields[2] !~ '^[[:alnum:]]{4,32}$' THEN
                PERFORM ledger.fail('validation', 'the PIN must be 4 to 32 letters or digits');
            END IF;
            v_last := ledger.admin_uid(v_fields[1], 'csv');
            PERFORM api.create_tag(v_event, v_last, v_fields[2]);
            v_count := v_count + 1;
            v_first := coalesce(v_first, v_last);
        END LOOP;
    EXCEPTION WHEN SQLSTATE 'FP001' THEN
        GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT;
        PERFORM ledger.fail('validation', format('line %s: %s', v_no, regexp_replace(v_message, '^validation: ', '')),
                            jsonb_build_object('field', 'csv', 'line', v_no));
    END;
    IF v_count = 0 THEN
        PERFORM ledger.fail('validation', 'the file has no UID,PIN lines', '{"field": "csv"}');
    END IF;
    PERFORM ledger.admin_audit(u.id, 'tags.import', 'event:' || v_event, NULL,
                               jsonb_build_object('count', v_count, 'first_uid', v_first, 'last_uid', v_last));
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION api.admin_tags_import IS
    'Imports wristbands from CSV lines UID,PIN (privilege setup), all or nothing. Returns how many.';
