-- Fewer row locks and checks per purchase (schema/50_transactions.sql, 60_bookings.sql, 95_fiscal.sql, 40_tags.sql).
-- depends: 0004_cashpoint_closing

-- A foreign key check runs a query and takes a KEY SHARE row lock on the referenced row for every inserted row. On a
-- purchase that was five checks: the tag (a WAL record and a dirtied page of the tag table per reserve), the
-- customer account, and the transaction row three times (its item, its booking lines, its outbox row). Those rows
-- are written only by ledger functions that have just read or written the referenced row, and transactions and tags
-- are never deleted (the triggers below refuse it; a customer account is kept by its tag's foreign key), so the
-- references cannot dangle; api.check_invariants() proves they exist.

SET ROLE festpay_owner;

ALTER TABLE ledger.transaction DROP CONSTRAINT transaction_tag_id_fkey;
ALTER TABLE ledger.transaction DROP CONSTRAINT transaction_account_id_fkey;
ALTER TABLE ledger.item DROP CONSTRAINT item_transaction_id_fkey;
ALTER TABLE ledger.booking DROP CONSTRAINT booking_transaction_id_fkey;
ALTER TABLE ledger.outbox DROP CONSTRAINT outbox_transaction_id_fkey;

CREATE TRIGGER transaction_no_delete BEFORE DELETE ON ledger.transaction
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER transaction_no_truncate BEFORE TRUNCATE ON ledger.transaction
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER tag_no_delete BEFORE DELETE ON ledger.tag
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER tag_no_truncate BEFORE TRUNCATE ON ledger.tag
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

RESET ROLE;
