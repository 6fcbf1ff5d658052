-- Foundation: roles, schemas, extensions and default privileges.
-- ledger: private tables (owner only); api: the callable surface; report: read-only views.

-- One login role per audience, each granted only the api functions of procedures/99_grants.sql:
-- festpay_terminal (the terminal API), festpay_relay (outbox, TSE, payment provider), festpay_web (admin site and
-- customer portal), festpay_report (report views and reports).
DO $$
DECLARE
    r text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'festpay_owner') THEN
        CREATE ROLE festpay_owner NOLOGIN;
    END IF;
    FOREACH r IN ARRAY ARRAY['festpay_terminal', 'festpay_relay', 'festpay_web', 'festpay_report'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
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
COMMENT ON ROLE festpay_terminal IS 'The terminal API of the gateway: may execute the terminal calls of the api, nothing else.';
COMMENT ON ROLE festpay_relay IS 'The outbox relay: may execute the outbox, TSE and payment-provider calls of the api.';
COMMENT ON ROLE festpay_web IS 'The admin site and the customer portal: may execute their session-checked api functions.';
COMMENT ON ROLE festpay_report IS 'Read-only reporting: report views and the read-only api functions.';

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

GRANT USAGE ON SCHEMA api TO festpay_report, festpay_terminal, festpay_relay, festpay_web;
GRANT USAGE ON SCHEMA report TO festpay_report;

-- Nothing a later migration creates is callable or readable by PUBLIC unless granted explicitly.
ALTER DEFAULT PRIVILEGES FOR ROLE festpay_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE festpay_owner REVOKE USAGE ON TYPES FROM PUBLIC;

SET ROLE festpay_owner;

CREATE TYPE ledger.account_kind AS ENUM ('customer', 'merchant', 'topup', 'cash', 'fee', 'payout', 'deposit', 'donation');
CREATE TYPE ledger.tx_type AS ENUM ('topup', 'purchase', 'deposit_return', 'chargeback', 'refund', 'payout', 'transfer',
                                    'donation');
CREATE TYPE ledger.tx_state AS ENUM (
    'Open', 'ReservePending', 'Reserve', 'ReserveExpired', 'TerminalConfirmUnknown',
    'ExternalPending', 'ExternalUnknown', 'Committed', 'Aborted');
CREATE TYPE ledger.payment_method AS ENUM ('cash', 'card', 'online');
-- One change of a transaction's state, as ledger.transaction.state_changes keeps it: from, to, when, who.
CREATE TYPE ledger.state_change AS (from_state ledger.tx_state, to_state ledger.tx_state, at timestamptz, actor text);
CREATE TYPE ledger.tag_status AS ENUM ('new', 'active', 'blocked');
CREATE TYPE ledger.position_kind AS ENUM ('sale', 'topup');
-- One booking line before it is stored: debit receives, credit pays.
CREATE TYPE ledger.line AS (debit bigint, credit bigint, amount bigint);

-- Value rules of the columns every purchase writes, as domains: PostgreSQL keeps a domain's check compiled in its
-- type cache, while a table's CHECK constraints are read back from their stored form and planned again by every
-- INSERT or UPDATE statement (that was a fifth of a purchase's CPU instructions). Rules that relate two columns
-- stay table constraints.
CREATE DOMAIN ledger.amount AS bigint CONSTRAINT positive CHECK (VALUE > 0);
COMMENT ON DOMAIN ledger.amount IS 'An amount of money in cents, more than 0.';
CREATE DOMAIN ledger.cents AS bigint CONSTRAINT not_negative CHECK (VALUE >= 0);
COMMENT ON DOMAIN ledger.cents IS 'Cents, 0 or more (a fee, a held amount, a unit price).';
CREATE DOMAIN ledger.tx_number AS bigint CONSTRAINT positive CHECK (VALUE > 0);
COMMENT ON DOMAIN ledger.tx_number IS 'A terminal transaction number: more than 0.';
CREATE DOMAIN ledger.tag_tx_number AS integer CONSTRAINT not_negative CHECK (VALUE >= 0);
COMMENT ON DOMAIN ledger.tag_tx_number IS 'A tag transaction number: 0 or more.';
CREATE DOMAIN ledger.line_number AS smallint CONSTRAINT positive CHECK (VALUE > 0);
COMMENT ON DOMAIN ledger.line_number IS 'The number of an item or booking line within its transaction, from 1.';
CREATE DOMAIN ledger.quantity AS integer CONSTRAINT positive CHECK (VALUE > 0);
COMMENT ON DOMAIN ledger.quantity IS 'How many of a product: more than 0.';
CREATE DOMAIN ledger.topic AS text CONSTRAINT lower_case_name CHECK (VALUE ~ '^[a-z][a-z0-9-]*$');
COMMENT ON DOMAIN ledger.topic IS 'An outbox topic: who outside is to hear of a commit (tse).';
CREATE DOMAIN ledger.ordering_key AS text CONSTRAINT length_1_to_100 CHECK (length(VALUE) BETWEEN 1 AND 100);
COMMENT ON DOMAIN ledger.ordering_key IS 'What outbox requests are handled in order within (the till).';
CREATE FUNCTION ledger.holds(p_state ledger.tx_state)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
-- Tells whether a transaction in this state may hold customer money: the one list of such states.
-- Returns true for ReservePending, Reserve, TerminalConfirmUnknown, Open and ExternalPending (a payout run's transfers
-- and donations hold their money from Open until the run is done or revoked; an online top-up holds nothing).
    SELECT p_state IN ('ReservePending', 'Reserve', 'TerminalConfirmUnknown', 'Open', 'ExternalPending');
$$;

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
    ('append-only',                 'FP050', 409, 'Booking lines and audit records cannot be changed'),
    ('log-entry-forged',            'FP060', 422, 'A tag log entry does not carry the valid MAC of the terminal it names'),
    ('log-entry-foreign',           'FP061', 422, 'A tag log entry names a terminal that is not a sale position of this event'),
    ('log-entry-number-too-high',   'FP062', 422, 'A tag log entry''s tag number is not below the tag''s next number'),
    ('offline-limit-exceeded',      'FP063', 422, 'The tag''s unreserved offline charges exceed the event''s offline limit'),
    ('implausible-offline-charge',  'FP064', 422, 'An offline sale of an unknown tag or above the event''s offline limit');

RESET ROLE;
