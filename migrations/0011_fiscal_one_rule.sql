-- The seller as an auditor needs it: street, postcode and city apart, the tax number (StNr) and the VAT id
-- (USt-IdNr), which receipts and the DSFinV-K export carry. The one-line address moves to the street.
-- depends: 0010_terminal_trust

SET ROLE festpay_owner;

ALTER TABLE ledger.event
    ADD COLUMN seller_street   text NOT NULL DEFAULT '' CHECK (length(seller_street) <= 200),
    ADD COLUMN seller_postcode text NOT NULL DEFAULT '' CHECK (seller_postcode ~ '^[0-9A-Za-z -]{0,10}$'),
    ADD COLUMN seller_city     text NOT NULL DEFAULT '' CHECK (length(seller_city) <= 100),
    ADD COLUMN tax_number      text NOT NULL DEFAULT '' CHECK (tax_number ~ '^[0-9 /]{0,20}$'),
    ADD COLUMN vat_id          text NOT NULL DEFAULT '' CHECK (vat_id ~ '^([A-Z]{2}[0-9A-Za-z+*.]{2,12})?$');

UPDATE ledger.event SET seller_street = left(seller_address, 200) WHERE seller_address <> '';
DROP FUNCTION IF EXISTS api.set_seller(bigint, text, text);
DROP FUNCTION IF EXISTS ledger.payment_name(ledger.payment_method);
DROP FUNCTION IF EXISTS api.dsfinvk_receipts(bigint[]);
ALTER TABLE ledger.event DROP COLUMN seller_address;
COMMENT ON TABLE ledger.event IS 'One festival edition: currency, limits (cents), fees per top-up method, reserve timeout, offline limits, tag key, and the seller (name, address, tax number, VAT id) printed on receipts and exported.';

-- The states that hold customer money are listed once (ledger.holds), for the row rule and the report alike.
CREATE OR REPLACE FUNCTION ledger.holds(p_state ledger.tx_state)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
-- Tells whether a transaction in this state may hold customer money: the one list of such states.
-- Returns true for ReservePending, Reserve and TerminalConfirmUnknown.
    SELECT p_state IN ('ReservePending', 'Reserve', 'TerminalConfirmUnknown');
$$;

CREATE OR REPLACE FUNCTION ledger.transaction_rules(t ledger.transaction)
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

CREATE OR REPLACE VIEW report.open_reservation AS
SELECT t.event_id, t.id AS transaction_id, t.state, tg.uid, t.amount::bigint AS amount, t.held::bigint AS held,
       t.assignment_id, t.terminal_tx_number::bigint AS terminal_tx_number, t.created_at, t.expires_at
  FROM ledger.transaction t
  LEFT JOIN ledger.tag tg ON tg.id = t.tag_id
 WHERE ledger.holds(t.state);
COMMENT ON VIEW report.open_reservation IS 'Transactions that still hold (or may hold) customer money.';

RESET ROLE;
