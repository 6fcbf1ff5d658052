-- Transactions, their items, the allowed state transitions and the violation log.

SET ROLE festpay_owner;

-- No foreign keys to hot parents (event_id, other_account_id, assignment_id here; item.product_id; booking's
-- accounts): a foreign key check takes a KEY SHARE lock on the referenced row, and on a row every sale touches
-- (the event, a merchant or top-up account, a product) concurrent lockers pile up MultiXacts. Nor on the purchase
-- path (account_id and tag_id here; the transaction_id of items, booking lines and outbox rows): each check is a
-- query and a row lock per inserted row (the tag's a WAL record and a dirtied page per reserve), and transactions and
-- tags are never deleted (schema/70_append_only.sql; a customer account is kept by its tag's foreign key). Those
-- references are only written by ledger functions that have just read or written the rows, and
-- api.check_invariants() proves they exist.
CREATE TABLE ledger.transaction (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id           bigint NOT NULL,
    type               ledger.tx_type NOT NULL,
    state              ledger.tx_state NOT NULL,
    account_id         bigint NOT NULL,
    other_account_id   bigint NOT NULL,
    tag_id             bigint,
    tag_tx_number      ledger.tag_tx_number,
    assignment_id      bigint,
    terminal_tx_number ledger.tx_number,
    amount             ledger.amount NOT NULL,
    fee                ledger.cents NOT NULL DEFAULT 0,
    held               ledger.cents NOT NULL DEFAULT 0,
    payment            ledger.payment_method,
    linked_id          bigint REFERENCES ledger.transaction,
    terminal_time      timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz,
    committed_at       timestamptz,
    state_changes      ledger.state_change[] NOT NULL DEFAULT '{}',
    CONSTRAINT terminal_identity_unique UNIQUE (assignment_id, terminal_tx_number)
);
COMMENT ON TABLE ledger.transaction IS
    'A transaction: account_id is the customer it concerns, other_account_id the counterparty '
    '(merchant, top-up source, drawer, payout, deposit or receiving customer). held is what it reserves now.';
COMMENT ON COLUMN ledger.transaction.state_changes IS 'Every change of state after the first (ledger.set_state): from, to, when, who; the first state is the first change''s from_state (or the state now), at created_at.';
-- The rules of a transaction row that relate two of its columns, as one CHECK on the whole row (transaction_rules).
-- PostgreSQL reads every CHECK expression back from its stored form and plans it again in each INSERT and UPDATE
-- statement; four rules written out cost a purchase (one INSERT, one UPDATE) 8 % of its CPU instructions, this one
-- call 3 % (callgrind). The rules are the same; the error still names the one that is broken.
CREATE FUNCTION ledger.transaction_rules(t ledger.transaction)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
-- Checks a transaction row: terminal identity complete, held only while reserved, committed_at iff Committed, two sides.
-- Returns true; raises check_violation (constraint transaction_rules) with the broken rule in the detail.
DECLARE
    v_rule text;
BEGIN
    IF (t.assignment_id IS NULL) <> (t.terminal_tx_number IS NULL) THEN
        v_rule := 'terminal_identity_complete: a terminal transaction has both an assignment and a terminal number';
    ELSIF t.held <> 0 AND NOT ledger.holds(t.state) THEN
        v_rule := format('held_only_while_reserved: a transaction in state %s holds %s', t.state, t.held);
    ELSIF (t.state = 'Committed') <> (t.committed_at IS NOT NULL) THEN
        v_rule := 'committed_at_iff_committed: committed_at is set exactly when the state is Committed';
    ELSIF t.account_id = t.other_account_id THEN
        v_rule := 'two_sides: account_id and other_account_id must differ';
    ELSE
        RETURN true;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'check_violation', SCHEMA = 'ledger', TABLE = 'transaction',
        CONSTRAINT = 'transaction_rules',
        MESSAGE = 'new row for relation "transaction" violates check constraint "transaction_rules"', DETAIL = v_rule;
END
$$;
ALTER TABLE ledger.transaction ADD CONSTRAINT transaction_rules CHECK (ledger.transaction_rules(transaction));

CREATE INDEX transaction_reserve_expiry ON ledger.transaction (expires_at) WHERE state = 'ReservePending';
CREATE INDEX transaction_unknown_by_tag ON ledger.transaction (tag_id) WHERE state = 'TerminalConfirmUnknown';
CREATE INDEX transaction_linked ON ledger.transaction (linked_id) WHERE linked_id IS NOT NULL;

CREATE TABLE ledger.item (
    transaction_id bigint NOT NULL,    -- no foreign key: see ledger.transaction
    line_no        ledger.line_number NOT NULL,
    product_id     bigint NOT NULL,
    name           text NOT NULL,
    quantity       ledger.quantity NOT NULL,
    unit_price     ledger.cents NOT NULL,
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
