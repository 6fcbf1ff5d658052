-- Events and their accounts: the settings of one festival edition, and every account of SPEC section 2.

SET ROLE festpay_owner;

CREATE TABLE ledger.event (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    time_zone        text NOT NULL,
    max_balance      bigint NOT NULL CHECK (max_balance > 0),
    min_topup        bigint NOT NULL CHECK (min_topup > 0),
    max_topup        bigint NOT NULL,
    topup_fee_cash   bigint NOT NULL DEFAULT 0 CHECK (topup_fee_cash >= 0),
    topup_fee_card   bigint NOT NULL DEFAULT 0 CHECK (topup_fee_card >= 0),
    topup_fee_online bigint NOT NULL DEFAULT 0 CHECK (topup_fee_online >= 0),
    payout_fee       bigint NOT NULL DEFAULT 0 CHECK (payout_fee >= 0),
    reserve_timeout  interval NOT NULL DEFAULT '120 seconds' CHECK (reserve_timeout > '0 seconds'),
    offline_limit    bigint NOT NULL DEFAULT 5000 CHECK (offline_limit >= 0),
    offline_log_size integer NOT NULL DEFAULT 16 CHECK (offline_log_size BETWEEN 1 AND 255),
    tag_key          bytea NOT NULL CHECK (length(tag_key) = 32),
    created_at       timestamptz NOT NULL DEFAULT now(),
    seller_name      text NOT NULL DEFAULT '',
    seller_street    text NOT NULL DEFAULT '' CHECK (length(seller_street) <= 200),
    seller_postcode  text NOT NULL DEFAULT '' CHECK (seller_postcode ~ '^[0-9A-Za-z -]{0,10}$'),
    seller_city      text NOT NULL DEFAULT '' CHECK (length(seller_city) <= 100),
    tax_number       text NOT NULL DEFAULT '' CHECK (tax_number ~ '^[0-9 /]{0,20}$'),
    vat_id           text NOT NULL DEFAULT '' CHECK (vat_id ~ '^([A-Z]{2}[0-9A-Za-z+*.]{2,12})?$'),
    provider_check_window interval NOT NULL DEFAULT '30 minutes' CHECK (provider_check_window > '0 seconds'),
    payout_countries text[] NOT NULL DEFAULT '{DE,AT,BE,ES,FI,FR,IE,IT,LU,NL,PT}'
                     CHECK (array_position(payout_countries, NULL) IS NULL
                            AND array_to_string(payout_countries, ',') ~ '^([A-Z]{2}(,[A-Z]{2})*)?$'),
    payout_deadline  timestamptz,
    payout_retention interval NOT NULL DEFAULT '90 days' CHECK (payout_retention >= '0 days'),
    payout_debtor_name text NOT NULL DEFAULT '' CHECK (length(payout_debtor_name) <= 70),
    payout_debtor_iban text NOT NULL DEFAULT '' CHECK (payout_debtor_iban ~ '^([A-Z]{2}[0-9]{2}[A-Z0-9]{11,30})?$'),
    payout_debtor_bic  text NOT NULL DEFAULT '' CHECK (payout_debtor_bic ~ '^([A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?)?$'),
    CONSTRAINT topup_bounds CHECK (max_topup >= min_topup AND max_topup <= max_balance),
    CONSTRAINT fees_below_min_topup CHECK (
        topup_fee_cash < min_topup AND topup_fee_card < min_topup AND topup_fee_online < min_topup)
);
COMMENT ON TABLE ledger.event IS 'One festival edition: currency, limits (cents), fees per top-up method, reserve timeout, offline limits, tag key, and the seller (name, address, tax number, VAT id) printed on receipts and exported.';
COMMENT ON COLUMN ledger.event.payout_countries IS 'The countries (ISO codes) of the IBANs a customer may give for a payout.';
COMMENT ON COLUMN ledger.event.payout_deadline IS 'After this time finance may donate every balance not paid out (NULL: never).';
COMMENT ON COLUMN ledger.event.payout_retention IS 'How long after its payout run is done a customer''s bank data is kept before an admin may erase it.';
COMMENT ON COLUMN ledger.event.payout_debtor_name IS 'The festival''s account the payout transfers come from: its holder (empty: not set).';
COMMENT ON COLUMN ledger.event.payout_debtor_iban IS 'The festival''s account the payout transfers come from: its IBAN (empty: not set).';
COMMENT ON COLUMN ledger.event.payout_debtor_bic IS 'The festival''s account the payout transfers come from: its BIC (empty: not given).';

-- Balance rule: an account's balance is what it received (debit) minus what it paid (credit).
-- Only customer accounts keep a running balance and a held amount in their row (they are locked per
-- purchase anyway); system accounts are hot and derive their balance from the booking lines.
CREATE TABLE ledger.account (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint NOT NULL REFERENCES ledger.event,
    kind       ledger.account_kind NOT NULL,
    name       text NOT NULL,
    balance    bigint NOT NULL DEFAULT 0,
    held       ledger.cents NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT account_name_unique UNIQUE (event_id, kind, name)
);
COMMENT ON TABLE ledger.account IS 'Double-entry accounts. Customer rows carry balance and held; other kinds derive their balance from ledger.booking.';

-- The rule of an account row that relates its columns, as one CHECK on the whole row (account_rules; see
-- ledger.transaction_rules for why a function: each purchase updates a customer row twice).
CREATE FUNCTION ledger.account_rules(a ledger.account)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks an account row: only customer accounts keep a running balance and a held amount in the row.
-- Returns true; raises check_violation (constraint account_rules) with the rule in the detail.
BEGIN
    IF a.kind = 'customer' OR (a.balance = 0 AND a.held = 0) THEN
        RETURN true;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'check_violation', SCHEMA = 'ledger', TABLE = 'account',
        CONSTRAINT = 'account_rules',
        MESSAGE = 'new row for relation "account" violates check constraint "account_rules"',
        DETAIL = format('only_customers_keep_a_running_balance: a %s account has balance %s and held %s',
                        a.kind, a.balance, a.held);
END
$$;
ALTER TABLE ledger.account ADD CONSTRAINT account_rules CHECK (ledger.account_rules(account));

RESET ROLE;
