-- The ledger core: roles, schemas, tables, constraints, reports (the first shape of schema/).
-- depends:

-- ===== schema/00_foundation.sql
-- Foundation: roles, schemas, extensions and default privileges.
-- ledger: private tables (owner only); api: the callable surface; report: read-only views.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'festpay_owner') THEN
        CREATE ROLE festpay_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'festpay_gateway') THEN
        CREATE ROLE festpay_gateway LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'festpay_report') THEN
        CREATE ROLE festpay_report LOGIN;
    END IF;
END
$$;

-- The migrating user creates the objects as festpay_owner (SET ROLE below).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'festpay_owner', 'MEMBER') THEN
        EXECUTE format('GRANT festpay_owner TO %I', current_user);
    END IF;
END
$$;
COMMENT ON ROLE festpay_owner IS 'Owns every Festpay object; SECURITY DEFINER functions run as it.';
COMMENT ON ROLE festpay_gateway IS 'The HTTP gateway: may only execute api functions.';
COMMENT ON ROLE festpay_report IS 'Read-only reporting: report views and api.check_invariants().';

CREATE SCHEMA extensions;
CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA extensions TO festpay_owner;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA ledger AUTHORIZATION festpay_owner;
CREATE SCHEMA api AUTHORIZATION festpay_owner;
CREATE SCHEMA report AUTHORIZATION festpay_owner;
COMMENT ON SCHEMA ledger IS 'Private tables of Festpay: not readable or writable by the gateway or report roles.';
COMMENT ON SCHEMA api IS 'The callable surface: SECURITY DEFINER functions, EXECUTE granted explicitly.';
COMMENT ON SCHEMA report IS 'Read-only reporting views for the festpay_report role.';

GRANT USAGE ON SCHEMA api TO festpay_gateway, festpay_report;
GRANT USAGE ON SCHEMA report TO festpay_report;

-- Nothing a later migration creates is callable or readable by PUBLIC unless granted explicitly.
ALTER DEFAULT PRIVILEGES FOR ROLE festpay_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE festpay_owner REVOKE USAGE ON TYPES FROM PUBLIC;

SET ROLE festpay_owner;

CREATE TYPE ledger.account_kind AS ENUM ('customer', 'merchant', 'topup', 'cash', 'fee', 'payout', 'deposit');
CREATE TYPE ledger.tx_type AS ENUM ('topup', 'purchase', 'deposit_return', 'chargeback', 'refund', 'payout', 'transfer');
CREATE TYPE ledger.tx_state AS ENUM (
    'Open', 'ReservePending', 'Reserve', 'ReserveExpired', 'TerminalConfirmUnknown',
    'ExternalPending', 'ExternalUnknown', 'Committed', 'Aborted');
CREATE TYPE ledger.payment_method AS ENUM ('cash', 'card', 'online');
CREATE TYPE ledger.tag_status AS ENUM ('new', 'active', 'blocked');
CREATE TYPE ledger.position_kind AS ENUM ('sale', 'topup');
-- One booking line before it is stored: debit receives, credit pays.
CREATE TYPE ledger.line AS (debit bigint, credit bigint, amount bigint);

-- Every failure the database reports has a stable name (slug) and SQLSTATE.
CREATE TABLE ledger.problem (
    slug        text PRIMARY KEY CHECK (slug ~ '^[a-z][a-z-]*$'),
    sqlstate    char(5) NOT NULL UNIQUE CHECK (sqlstate ~ '^FP[0-9]{3}$'),
    http_status integer NOT NULL CHECK (http_status BETWEEN 400 AND 599),
    title       text NOT NULL
);
COMMENT ON TABLE ledger.problem IS 'Named errors: every api function raises one of these SQLSTATEs; the gateway maps them to RFC 9457 types.';

INSERT INTO ledger.problem (slug, sqlstate, http_status, title) VALUES
    ('validation',                  'FP001', 400, 'The request is not valid'),
    ('amount-mismatch',             'FP002', 422, 'The amount is not the sum of the items'),
    ('unknown-product',             'FP003', 422, 'A product does not belong to this event'),
    ('price-mismatch',              'FP004', 422, 'A fixed-price product was sold at another price'),
    ('not-found',                   'FP010', 404, 'No such object'),
    ('tag-blocked',                 'FP011', 403, 'The tag is blocked'),
    ('tag-not-active',              'FP012', 409, 'The tag has never been topped up'),
    ('insufficient-balance',        'FP020', 402, 'The available balance is too low'),
    ('max-balance-exceeded',        'FP021', 422, 'The balance would exceed the event''s maximum'),
    ('topup-out-of-bounds',         'FP022', 422, 'The top-up is below the minimum or above the maximum'),
    ('chargeback-exceeds-purchase', 'FP023', 422, 'More would be returned than is left of the purchase'),
    ('invalid-transition',          'FP030', 409, 'The transaction cannot move to that state'),
    ('idempotency-conflict',        'FP031', 422, 'The same terminal transaction was sent with a different payload'),
    ('wrong-position',              'FP032', 409, 'This position cannot do that'),
    ('registration-code-invalid',   'FP040', 403, 'The registration code is unknown or already used'),
    ('append-only',                 'FP050', 409, 'Booking lines and audit records cannot be changed');

RESET ROLE;

-- ===== schema/10_events.sql
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
    CONSTRAINT topup_bounds CHECK (max_topup >= min_topup AND max_topup <= max_balance),
    CONSTRAINT fees_below_min_topup CHECK (
        topup_fee_cash < min_topup AND topup_fee_card < min_topup AND topup_fee_online < min_topup)
);
COMMENT ON TABLE ledger.event IS 'One festival edition: currency, limits (cents), fees per top-up method, reserve timeout, offline limits, tag key.';

-- Balance rule: an account's balance is what it received (debit) minus what it paid (credit).
-- Only customer accounts keep a running balance and a held amount in their row (they are locked per
-- purchase anyway); system accounts are hot and derive their balance from the booking lines.
CREATE TABLE ledger.account (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint NOT NULL REFERENCES ledger.event,
    kind       ledger.account_kind NOT NULL,
    name       text NOT NULL,
    balance    bigint NOT NULL DEFAULT 0,
    held       bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT account_name_unique UNIQUE (event_id, kind, name),
    CONSTRAINT held_not_negative CHECK (held >= 0),
    CONSTRAINT only_customers_keep_a_running_balance CHECK (kind = 'customer' OR (balance = 0 AND held = 0))
);
COMMENT ON TABLE ledger.account IS 'Double-entry accounts. Customer rows carry balance and held; other kinds derive their balance from ledger.booking.';

RESET ROLE;

-- ===== schema/20_catalog.sql
-- Merchants, positions (till places) and products of an event.

SET ROLE festpay_owner;

CREATE TABLE ledger.merchant (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint NOT NULL REFERENCES ledger.event,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    account_id bigint NOT NULL UNIQUE REFERENCES ledger.account,
    CONSTRAINT merchant_name_unique UNIQUE (event_id, name)
);
COMMENT ON TABLE ledger.merchant IS 'A vendor; its sales are booked on its merchant account.';

CREATE TABLE ledger.position (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES ledger.event,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        ledger.position_kind NOT NULL,
    merchant_id bigint REFERENCES ledger.merchant,
    CONSTRAINT position_name_unique UNIQUE (event_id, name),
    CONSTRAINT sale_positions_have_a_merchant CHECK (kind <> 'sale' OR merchant_id IS NOT NULL)
);
COMMENT ON TABLE ledger.position IS 'A till place: sale (for one merchant) or top-up.';

CREATE TABLE ledger.product (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES ledger.event,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price       bigint CHECK (price >= 0),
    vat_rate    numeric(5,2) NOT NULL CHECK (vat_rate >= 0 AND vat_rate < 100),
    fixed_price boolean NOT NULL DEFAULT true,
    returnable  boolean NOT NULL DEFAULT false,
    CONSTRAINT product_name_unique UNIQUE (event_id, name),
    CONSTRAINT fixed_price_has_a_price CHECK (NOT fixed_price OR price IS NOT NULL),
    CONSTRAINT returnable_has_fixed_price CHECK (NOT returnable OR fixed_price)
);
COMMENT ON TABLE ledger.product IS 'A product: price in cents (NULL when variable), VAT rate in percent, returnable = a deposit item (Pfand).';

RESET ROLE;

-- ===== schema/30_terminals.sql
-- Terminal registration: one-time codes and assignments (a terminal registered to one event and position).

SET ROLE festpay_owner;

CREATE TABLE ledger.assignment (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES ledger.event,
    position_id     bigint NOT NULL REFERENCES ledger.position,
    device          text NOT NULL CHECK (length(device) BETWEEN 1 AND 200),
    secret          bytea NOT NULL CHECK (length(secret) = 32),
    cash_account_id bigint NOT NULL UNIQUE REFERENCES ledger.account,
    registered_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ledger.assignment IS 'One terminal registration: its id with the terminal transaction number identifies a terminal transaction (SPEC 4).';

CREATE TABLE ledger.registration_code (
    code          text PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{12}$'),
    event_id      bigint NOT NULL REFERENCES ledger.event,
    position_id   bigint NOT NULL REFERENCES ledger.position,
    created_at    timestamptz NOT NULL DEFAULT now(),
    used_at       timestamptz,
    assignment_id bigint UNIQUE REFERENCES ledger.assignment,
    CONSTRAINT used_once CHECK ((used_at IS NULL) = (assignment_id IS NULL))
);
COMMENT ON TABLE ledger.registration_code IS 'A code an admin makes for one event and position; it registers one terminal, once.';

RESET ROLE;

-- ===== schema/40_tags.sql
-- Tags (NFC wristbands): each is the key to one customer account.

SET ROLE festpay_owner;

CREATE TABLE ledger.tag (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint NOT NULL REFERENCES ledger.event,
    uid        text NOT NULL CHECK (uid ~ '^[0-9A-F]{8,20}$'),
    pin_hash   text,
    status     ledger.tag_status NOT NULL DEFAULT 'new',
    account_id bigint NOT NULL UNIQUE REFERENCES ledger.account,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tag_uid_unique UNIQUE (event_id, uid)
);
COMMENT ON TABLE ledger.tag IS 'An NFC tag: UID in upper-case hex, PIN stored as a bcrypt hash, status new (never topped up), active or blocked.';

RESET ROLE;

-- ===== schema/50_transactions.sql
-- Transactions, their items, the allowed state transitions and the violation log.

SET ROLE festpay_owner;

-- No foreign keys to hot parents (event_id, other_account_id, assignment_id here; item.product_id; booking's
-- accounts): a foreign key check takes a KEY SHARE lock on the referenced row, and on a row every sale touches
-- (the event, a merchant or top-up account, a product) concurrent lockers pile up MultiXacts. Those references are
-- only written by ledger functions that looked the rows up, and api.check_invariants() proves they exist.
CREATE TABLE ledger.transaction (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id           bigint NOT NULL,
    type               ledger.tx_type NOT NULL,
    state              ledger.tx_state NOT NULL,
    account_id         bigint NOT NULL REFERENCES ledger.account,
    other_account_id   bigint NOT NULL,
    tag_id             bigint REFERENCES ledger.tag,
    tag_tx_number      integer CHECK (tag_tx_number >= 0),
    assignment_id      bigint,
    terminal_tx_number bigint CHECK (terminal_tx_number > 0),
    amount             bigint NOT NULL CHECK (amount > 0),
    fee                bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    held               bigint NOT NULL DEFAULT 0,
    payment            ledger.payment_method,
    linked_id          bigint REFERENCES ledger.transaction,
    terminal_time      timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz,
    committed_at       timestamptz,
    CONSTRAINT terminal_identity_unique UNIQUE (assignment_id, terminal_tx_number),
    CONSTRAINT terminal_identity_complete CHECK ((assignment_id IS NULL) = (terminal_tx_number IS NULL)),
    CONSTRAINT held_only_while_reserved CHECK (
        held >= 0 AND (held = 0 OR state IN ('ReservePending', 'Reserve', 'TerminalConfirmUnknown'))),
    CONSTRAINT committed_at_iff_committed CHECK ((state = 'Committed') = (committed_at IS NOT NULL)),
    CONSTRAINT two_sides CHECK (account_id <> other_account_id)
);
COMMENT ON TABLE ledger.transaction IS
    'A transaction: account_id is the customer it concerns, other_account_id the counterparty '
    '(merchant, top-up source, drawer, payout, deposit or receiving customer). held is what it reserves now.';
CREATE INDEX transaction_reserve_expiry ON ledger.transaction (expires_at) WHERE state = 'ReservePending';
CREATE INDEX transaction_unknown_by_tag ON ledger.transaction (tag_id) WHERE state = 'TerminalConfirmUnknown';
CREATE INDEX transaction_linked ON ledger.transaction (linked_id) WHERE linked_id IS NOT NULL;

CREATE TABLE ledger.item (
    transaction_id bigint NOT NULL REFERENCES ledger.transaction,
    line_no        smallint NOT NULL CHECK (line_no > 0),
    product_id     bigint NOT NULL,
    name           text NOT NULL,
    quantity       integer NOT NULL CHECK (quantity > 0),
    unit_price     bigint NOT NULL CHECK (unit_price >= 0),
    vat_rate       numeric(5,2) NOT NULL,
    returnable     boolean NOT NULL,
    PRIMARY KEY (transaction_id, line_no)
);
COMMENT ON TABLE ledger.item IS 'A line item as sold: the product''s name, unit price and VAT rate at the time of sale. Append-only.';

-- The source of truth for state changes; from_state NULL is a transaction the backend has not seen yet.
CREATE TABLE ledger.transition (
    from_state ledger.tx_state,
    to_state   ledger.tx_state NOT NULL,
    trigger    text NOT NULL,
    CONSTRAINT transition_unique UNIQUE NULLS NOT DISTINCT (from_state, to_state)
);
COMMENT ON TABLE ledger.transition IS 'Allowed backend state transitions (SPEC 5); ledger.set_state consults it for every change.';

INSERT INTO ledger.transition (from_state, to_state, trigger) VALUES
    (NULL, 'ReservePending', 'online reserve at terminal checkout'),
    (NULL, 'Reserve', 'tag data upload contains a charge the backend has not seen'),
    (NULL, 'Committed', 'replication of an unseen terminal transaction, or a booking made online'),
    (NULL, 'Aborted', 'replication of an unseen terminal transaction'),
    (NULL, 'TerminalConfirmUnknown', 'replication of an unseen terminal transaction'),
    (NULL, 'Open', 'online or auto top-up created'),
    ('ReservePending', 'Reserve', 'tag data upload contains this charge'),
    ('ReservePending', 'ReserveExpired', 'reserve timeout passed'),
    ('ReservePending', 'Committed', 'replication'),
    ('ReservePending', 'Aborted', 'replication'),
    ('ReservePending', 'TerminalConfirmUnknown', 'replication'),
    ('Reserve', 'Committed', 'replication'),
    ('ReserveExpired', 'Committed', 'replication: the tag was charged, booked even if it overdraws'),
    ('ReserveExpired', 'Aborted', 'replication (operator cancel)'),
    ('TerminalConfirmUnknown', 'Committed', 'tag data upload contains this charge, or an admin resolves it'),
    ('TerminalConfirmUnknown', 'Aborted', 'tag data upload shows the tag was not charged, or an admin resolves it'),
    ('Open', 'ExternalPending', 'set just before calling the payment provider'),
    ('ExternalPending', 'Committed', 'positive answer from the provider'),
    ('ExternalPending', 'Aborted', 'negative answer from the provider'),
    ('ExternalPending', 'ExternalUnknown', 'no determinate answer before the background check timed out'),
    ('ExternalUnknown', 'Committed', 'late provider answer, or an admin resolves it'),
    ('ExternalUnknown', 'Aborted', 'late provider answer, or an admin resolves it');

CREATE TABLE ledger.violation (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor          text NOT NULL,
    event_id       bigint,
    transaction_id bigint,
    from_state     ledger.tx_state,
    to_state       ledger.tx_state,
    reason         text NOT NULL,
    payload        jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE ledger.violation IS 'Every refused state transition: who, which transaction, from, to, payload, when. Append-only; kept even though the change is refused.';

CREATE TABLE ledger.overdraft (
    transaction_id bigint PRIMARY KEY REFERENCES ledger.transaction,
    account_id     bigint NOT NULL REFERENCES ledger.account,
    balance_after  bigint NOT NULL CHECK (balance_after < 0),
    flagged_at     timestamptz NOT NULL DEFAULT now(),
    reviewed_at    timestamptz,
    reviewed_by    text
);
COMMENT ON TABLE ledger.overdraft IS 'A booking that took a customer below zero because the tag had already been charged; for review.';

RESET ROLE;

-- ===== schema/60_bookings.sql
-- Booking lines: the append-only double-entry journal.

SET ROLE festpay_owner;

CREATE TABLE ledger.booking (
    transaction_id    bigint NOT NULL REFERENCES ledger.transaction,
    line_no           smallint NOT NULL CHECK (line_no > 0),
    debit_account_id  bigint NOT NULL,   -- no foreign key: see ledger.transaction; checked by api.check_invariants()
    credit_account_id bigint NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    booked_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, line_no),
    CONSTRAINT two_accounts CHECK (debit_account_id <> credit_account_id)
);
COMMENT ON TABLE ledger.booking IS 'One movement of money: the debit account receives amount cents, the credit account pays them. Append-only.';
CREATE INDEX booking_debit ON ledger.booking (debit_account_id) INCLUDE (amount);
CREATE INDEX booking_credit ON ledger.booking (credit_account_id) INCLUDE (amount);

RESET ROLE;

-- ===== schema/70_append_only.sql
-- Append-only enforcement: booking lines, items and audit records refuse UPDATE, DELETE and TRUNCATE, for every role.

SET ROLE festpay_owner;

CREATE FUNCTION ledger.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
-- Trigger: refuses any change to an append-only table.
-- Raises append-only (FP050).
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FP050', HINT = 'append-only';
END
$$;

CREATE TRIGGER booking_append_only BEFORE UPDATE OR DELETE ON ledger.booking
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER booking_no_truncate BEFORE TRUNCATE ON ledger.booking
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER item_append_only BEFORE UPDATE OR DELETE ON ledger.item
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER item_no_truncate BEFORE TRUNCATE ON ledger.item
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER violation_append_only BEFORE UPDATE OR DELETE ON ledger.violation
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER violation_no_truncate BEFORE TRUNCATE ON ledger.violation
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

RESET ROLE;

-- ===== schema/80_report.sql
-- Reporting views (schema report), readable by festpay_report. Balances here are derived from the booking lines.

SET ROLE festpay_owner;

CREATE VIEW report.account_balance AS
SELECT a.event_id, a.id AS account_id, a.kind, a.name,
       (coalesce(d.total, 0) - coalesce(c.total, 0))::bigint AS balance,
       a.held
  FROM ledger.account a
  LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS total FROM ledger.booking GROUP BY 1) d ON d.id = a.id
  LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS total FROM ledger.booking GROUP BY 1) c ON c.id = a.id;
COMMENT ON VIEW report.account_balance IS 'Every account with its balance derived from the booking lines (received minus paid) and its held amount.';

CREATE VIEW report.balance_by_kind AS
SELECT event_id, kind, count(*) AS accounts, sum(balance)::bigint AS balance, sum(held)::bigint AS held
  FROM report.account_balance
 GROUP BY event_id, kind;
COMMENT ON VIEW report.balance_by_kind IS 'Balances summed per event and account kind.';

CREATE VIEW report.trial_balance AS
SELECT e.id AS event_id, e.name AS event,
       coalesce(sum(b.balance) FILTER (WHERE b.balance > 0), 0)::bigint AS debit_balances,
       coalesce(sum(b.balance) FILTER (WHERE b.balance < 0), 0)::bigint AS credit_balances,
       coalesce(sum(b.balance), 0)::bigint AS total
  FROM ledger.event e
  LEFT JOIN report.account_balance b ON b.event_id = e.id
 GROUP BY e.id, e.name;
COMMENT ON VIEW report.trial_balance IS 'Per event: the sum of positive and negative balances; total is always 0.';

CREATE VIEW report.open_reservation AS
SELECT t.event_id, t.id AS transaction_id, t.state, tg.uid, t.amount, t.held,
       t.assignment_id, t.terminal_tx_number, t.created_at, t.expires_at
  FROM ledger.transaction t
  LEFT JOIN ledger.tag tg ON tg.id = t.tag_id
 WHERE t.state IN ('ReservePending', 'Reserve', 'TerminalConfirmUnknown');
COMMENT ON VIEW report.open_reservation IS 'Transactions that still hold (or may hold) customer money.';

CREATE VIEW report.violation AS
SELECT id, occurred_at, actor, event_id, transaction_id, from_state, to_state, reason, payload
  FROM ledger.violation;
COMMENT ON VIEW report.violation IS 'Refused state transitions, newest last.';

CREATE VIEW report.tag_number_duplicate AS
SELECT t.event_id, tg.uid, t.tag_tx_number, count(*) AS transactions,
       array_agg(t.id ORDER BY t.id) AS transaction_ids
  FROM ledger.transaction t
  JOIN ledger.tag tg ON tg.id = t.tag_id
 WHERE t.tag_tx_number IS NOT NULL AND t.state <> 'Aborted'
 GROUP BY t.event_id, tg.uid, t.tag_tx_number
HAVING count(*) > 1;
COMMENT ON VIEW report.tag_number_duplicate IS 'Tag transaction numbers used by more than one live transaction of a tag: a sign of corrupt tag data.';

CREATE VIEW report.overdraft AS
SELECT o.transaction_id, a.event_id, tg.uid, o.balance_after, o.flagged_at, o.reviewed_at, o.reviewed_by
  FROM ledger.overdraft o
  JOIN ledger.account a ON a.id = o.account_id
  LEFT JOIN ledger.tag tg ON tg.account_id = a.id;
COMMENT ON VIEW report.overdraft IS 'Bookings that took a customer below zero (tag already charged), with their review status.';

GRANT SELECT ON report.account_balance, report.balance_by_kind, report.trial_balance, report.open_reservation,
                report.violation, report.tag_number_duplicate, report.overdraft TO festpay_report;

RESET ROLE;

