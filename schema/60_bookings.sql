-- Booking lines: the append-only double-entry journal.

SET ROLE festpay_owner;

CREATE TABLE ledger.booking (
    transaction_id    bigint NOT NULL,   -- no foreign key: see ledger.transaction
    line_no           ledger.line_number NOT NULL,
    debit_account_id  bigint NOT NULL,   -- no foreign key: see ledger.transaction; checked by api.check_invariants()
    credit_account_id bigint NOT NULL,
    amount            ledger.amount NOT NULL,
    booked_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, line_no),
    CONSTRAINT two_accounts CHECK (debit_account_id <> credit_account_id)
);
COMMENT ON TABLE ledger.booking IS 'One movement of money: the debit account receives amount cents, the credit account pays them. Append-only.';
CREATE INDEX booking_debit ON ledger.booking (debit_account_id) INCLUDE (amount);
CREATE INDEX booking_credit ON ledger.booking (credit_account_id) INCLUDE (amount);

RESET ROLE;
