-- Payouts after the event (schema/99_payouts.sql, procedures/75_payouts.sql): the event's payout settings, each
-- customer's bank data, payout runs and their lines, the payout problems, a donation account per event; and the
-- states Open and ExternalPending hold money (a payout run's transactions hold theirs until it is done or revoked).
-- depends: 0018_payout_kinds

SET ROLE festpay_owner;

ALTER TABLE ledger.event
    ADD COLUMN payout_countries text[] NOT NULL DEFAULT '{DE,AT,BE,ES,FI,FR,IE,IT,LU,NL,PT}'
                     CHECK (array_position(payout_countries, NULL) IS NULL
                            AND array_to_string(payout_countries, ',') ~ '^([A-Z]{2}(,[A-Z]{2})*)?$'),
    ADD COLUMN payout_deadline  timestamptz,
    ADD COLUMN payout_retention interval NOT NULL DEFAULT '90 days' CHECK (payout_retention >= '0 days'),
    ADD COLUMN payout_debtor_name text NOT NULL DEFAULT '' CHECK (length(payout_debtor_name) <= 70),
    ADD COLUMN payout_debtor_iban text NOT NULL DEFAULT '' CHECK (payout_debtor_iban ~ '^([A-Z]{2}[0-9]{2}[A-Z0-9]{11,30})?$'),
    ADD COLUMN payout_debtor_bic  text NOT NULL DEFAULT '' CHECK (payout_debtor_bic ~ '^([A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?)?$');
COMMENT ON COLUMN ledger.event.payout_countries IS 'The countries (ISO codes) of the IBANs a customer may give for a payout.';
COMMENT ON COLUMN ledger.event.payout_deadline IS 'After this time finance may donate every balance not paid out (NULL: never).';
COMMENT ON COLUMN ledger.event.payout_retention IS 'How long after its payout run is done a customer''s bank data is kept before an admin may erase it.';
COMMENT ON COLUMN ledger.event.payout_debtor_name IS 'The festival''s account the payout transfers come from: its holder (empty: not set).';
COMMENT ON COLUMN ledger.event.payout_debtor_iban IS 'The festival''s account the payout transfers come from: its IBAN (empty: not set).';
COMMENT ON COLUMN ledger.event.payout_debtor_bic IS 'The festival''s account the payout transfers come from: its BIC (empty: not given).';

-- The states that hold customer money, listed once (ledger.holds): a payout run's transactions hold from Open on.
CREATE OR REPLACE FUNCTION ledger.holds(p_state ledger.tx_state)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
-- Tells whether a transaction in this state may hold customer money: the one list of such states.
-- Returns true for ReservePending, Reserve, TerminalConfirmUnknown, Open and ExternalPending (a payout run's transfers
-- and donations hold their money from Open until the run is done or revoked; an online top-up holds nothing).
    SELECT p_state IN ('ReservePending', 'Reserve', 'TerminalConfirmUnknown', 'Open', 'ExternalPending');
$$;

-- Every event has a donation account (api.create_event makes it with the event).
INSERT INTO ledger.account (event_id, kind, name)
SELECT e.id, 'donation', 'donation' FROM ledger.event e
    ON CONFLICT ON CONSTRAINT account_name_unique DO NOTHING;

INSERT INTO ledger.problem (slug, sqlstate, http_status, title) VALUES
    ('payout-locked',               'FP080', 409, 'The bank data is locked while the customer is in a payout run'),
    ('payout-not-eligible',         'FP081', 409, 'No customer is eligible for a payout'),
    ('payout-deadline-not-reached', 'FP082', 409, 'The event''s payout deadline has not passed'),
    ('payout-run-closed',           'FP083', 409, 'The payout run is done or revoked');

-- A customer's payout request: the bank account and e-mail it gave in the portal and how much of its balance it
-- donates; and whether support blocked its payout (a row may exist for that alone, entered_at NULL). Erasing keeps the
-- row (tag, choice, times) without the personal data.
CREATE TABLE ledger.payout_bank (
    tag_id         bigint PRIMARY KEY REFERENCES ledger.tag,
    event_id       bigint NOT NULL REFERENCES ledger.event,
    iban           text CHECK (iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    holder         text CHECK (length(holder) BETWEEN 1 AND 70),
    email          text CHECK (length(email) BETWEEN 3 AND 254),
    donate         text NOT NULL DEFAULT 'none' CHECK (donate IN ('none', 'part', 'all')),
    donation       bigint CHECK (donation > 0),
    entered_at     timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    blocked        boolean NOT NULL DEFAULT false,
    blocked_reason text CHECK (length(blocked_reason) BETWEEN 1 AND 1000),
    erased_at      timestamptz,
    CONSTRAINT donation_with_part CHECK ((donate = 'part') = (donation IS NOT NULL)),
    CONSTRAINT complete_when_entered CHECK (entered_at IS NULL OR erased_at IS NOT NULL
                                            OR (email IS NOT NULL AND (donate = 'all' OR (iban IS NOT NULL AND holder IS NOT NULL)))),
    CONSTRAINT erased_is_empty CHECK (erased_at IS NULL OR (iban IS NULL AND holder IS NULL AND email IS NULL)),
    CONSTRAINT reason_when_blocked CHECK (NOT blocked OR blocked_reason IS NOT NULL)
);
COMMENT ON TABLE ledger.payout_bank IS
    'A customer''s payout request from the portal: IBAN, account holder, e-mail, donation (none, part: donation cents, '
    'all), when first entered; payout blocked by support (with the reason); erased_at once the personal data is erased.';

-- A payout run: the customers it took (its lines), the limits it was made with, the account the transfers come from,
-- its totals (api.check_invariants compares them with the lines) and who made, finished or revoked it.
CREATE TABLE ledger.payout_run (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       bigint NOT NULL REFERENCES ledger.event,
    state          text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done', 'revoked')),
    execution_date date NOT NULL,
    max_count      integer NOT NULL CHECK (max_count > 0),
    max_sum        bigint NOT NULL CHECK (max_sum > 0),
    count          integer NOT NULL CHECK (count > 0),
    transfers      bigint NOT NULL CHECK (transfers >= 0),
    fees           bigint NOT NULL CHECK (fees >= 0),
    donations      bigint NOT NULL CHECK (donations >= 0),
    debtor_name    text NOT NULL CHECK (length(debtor_name) BETWEEN 1 AND 70),
    debtor_iban    text NOT NULL CHECK (debtor_iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    debtor_bic     text NOT NULL CHECK (debtor_bic ~ '^([A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?)?$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     bigint REFERENCES ledger.admin_user,
    done_at        timestamptz,
    done_by        bigint REFERENCES ledger.admin_user,
    revoked_at     timestamptz,
    revoked_by     bigint REFERENCES ledger.admin_user,
    reason         text CHECK (length(reason) BETWEEN 1 AND 1000),
    CONSTRAINT closed_when_closed CHECK ((state = 'done') = (done_at IS NOT NULL)
                                         AND (state = 'revoked') = (revoked_at IS NOT NULL)
                                         AND (state = 'revoked') = (reason IS NOT NULL))
);
COMMENT ON TABLE ledger.payout_run IS
    'A payout run (one SEPA credit transfer file): open, done (booked) or revoked; execution date, limits, totals in '
    'cents (count, transfers, fees, donations), the debtor account, and who created, finished or revoked it (NULL: a DBA).';

-- One customer of a run: the transfer to its bank account (amount), the fee and the donation, and the transactions
-- that hold them while the run is open (payout: amount + fee; donation). A revoked run's lines are revoked.
CREATE TABLE ledger.payout_line (
    run_id                  bigint NOT NULL REFERENCES ledger.payout_run,
    line_no                 integer NOT NULL CHECK (line_no > 0),
    tag_id                  bigint NOT NULL REFERENCES ledger.tag,
    amount                  bigint NOT NULL CHECK (amount >= 0),
    fee                     bigint NOT NULL CHECK (fee >= 0),
    donation                bigint NOT NULL CHECK (donation >= 0),
    payout_transaction_id   bigint UNIQUE REFERENCES ledger.transaction,
    donation_transaction_id bigint UNIQUE REFERENCES ledger.transaction,
    revoked                 boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, line_no),
    CONSTRAINT transfer_has_payout CHECK ((amount > 0) = (payout_transaction_id IS NOT NULL) AND (amount > 0 OR fee = 0)),
    CONSTRAINT donation_has_transaction CHECK ((donation > 0) = (donation_transaction_id IS NOT NULL)),
    CONSTRAINT moves_money CHECK (amount + donation > 0)
);
COMMENT ON TABLE ledger.payout_line IS
    'A customer in a payout run: transfer (amount), fee and donation in cents with the payout and donation transactions; '
    'revoked with its run.';
-- A customer is in one run at most (open or done): a second run cannot take it, even when two runs are made at once.
CREATE UNIQUE INDEX payout_line_one_run_per_tag ON ledger.payout_line (tag_id) WHERE NOT revoked;

RESET ROLE;
