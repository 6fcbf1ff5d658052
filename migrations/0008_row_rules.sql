-- The rules that relate two columns of a transaction or account row become one CHECK on the whole row each, calling
-- ledger.transaction_rules / ledger.account_rules (schema/50_transactions.sql, 10_events.sql).
-- depends: 0007_value_domains

-- PostgreSQL reads every CHECK expression back from its stored text and plans it again in each INSERT and UPDATE
-- statement, and a purchase writes a transaction row twice and a customer row twice. Measured with callgrind on a
-- purchase (api.reserve + api.replicate, single-user backend): 2.67 -> 2.49 million instructions (-7 %). Adding the
-- constraints checks every existing row once (a function call per row).

SET ROLE festpay_owner;

ALTER TABLE ledger.transaction
    DROP CONSTRAINT terminal_identity_complete,
    DROP CONSTRAINT held_only_while_reserved,
    DROP CONSTRAINT committed_at_iff_committed,
    DROP CONSTRAINT two_sides;
ALTER TABLE ledger.account
    DROP CONSTRAINT only_customers_keep_a_running_balance;

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
    ELSIF t.held <> 0 AND t.state NOT IN ('ReservePending', 'Reserve', 'TerminalConfirmUnknown') THEN
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
