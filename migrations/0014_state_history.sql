-- Every state change of a transaction is kept on its row (ledger.set_state appends it in the UPDATE it makes
-- anyway), for the admin site's transaction detail.
-- depends: 0013_admin_operations

SET ROLE festpay_owner;

-- One change of a transaction's state, as ledger.transaction.state_changes keeps it: from, to, when, who.
CREATE TYPE ledger.state_change AS (from_state ledger.tx_state, to_state ledger.tx_state, at timestamptz, actor text);

ALTER TABLE ledger.transaction ADD COLUMN state_changes ledger.state_change[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN ledger.transaction.state_changes IS 'Every change of state after the first (ledger.set_state): from, to, when, who; the first state is the first change''s from_state (or the state now), at created_at.';

RESET ROLE;
