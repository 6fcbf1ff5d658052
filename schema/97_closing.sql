-- Cash-point closings (Kassenabschluss, DSFinV-K): per till, a Z number that ascends and is never reset, and the
-- committed receipts each closing covers.

SET ROLE festpay_owner;

-- A till is a TSE client: a terminal assignment, or the backend (assignment_id NULL) for bookings made without a
-- till. Z numbers ascend per client id (UNIQUE below) and are never reset; api.close_cashpoint assigns them one
-- at a time per till (an advisory transaction lock).
CREATE TABLE ledger.cashpoint_closing (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id             bigint NOT NULL REFERENCES ledger.event,
    client_id            text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 30),
    assignment_id        bigint REFERENCES ledger.assignment,
    z_nr                 integer NOT NULL CHECK (z_nr > 0),
    closed_at            timestamptz NOT NULL DEFAULT now(),
    first_transaction_id bigint NOT NULL,
    last_transaction_id  bigint NOT NULL,
    transactions         integer NOT NULL CHECK (transactions > 0),
    total                bigint NOT NULL,
    CONSTRAINT z_nr_unique UNIQUE (client_id, z_nr),
    CONSTRAINT first_before_last CHECK (first_transaction_id <= last_transaction_id)
);
COMMENT ON TABLE ledger.cashpoint_closing IS
    'A cash-point closing (Kassenabschluss) of one till (TSE client id): its Z number, when, the first and last '
    'transaction id, how many receipts and their total (money into the till positive). Append-only.';

-- Which closing covers a committed receipt: each one at most once (the primary key).
CREATE TABLE ledger.cashpoint_closing_transaction (
    transaction_id bigint PRIMARY KEY REFERENCES ledger.transaction,
    closing_id     bigint NOT NULL REFERENCES ledger.cashpoint_closing
);
COMMENT ON TABLE ledger.cashpoint_closing_transaction IS
    'The committed receipts a cash-point closing covers; a receipt belongs to at most one closing. Append-only.';
CREATE INDEX cashpoint_closing_transaction_closing ON ledger.cashpoint_closing_transaction (closing_id);

CREATE TRIGGER cashpoint_closing_append_only BEFORE UPDATE OR DELETE ON ledger.cashpoint_closing
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER cashpoint_closing_no_truncate BEFORE TRUNCATE ON ledger.cashpoint_closing
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER cashpoint_closing_transaction_append_only BEFORE UPDATE OR DELETE ON ledger.cashpoint_closing_transaction
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER cashpoint_closing_transaction_no_truncate BEFORE TRUNCATE ON ledger.cashpoint_closing_transaction
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

RESET ROLE;
