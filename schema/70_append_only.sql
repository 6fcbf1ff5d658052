-- Append-only enforcement: booking lines, items and audit records refuse UPDATE, DELETE and TRUNCATE, for every role;
-- transactions and tags change but are never deleted (rows of other tables refer to them without foreign keys).

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
CREATE TRIGGER transaction_no_delete BEFORE DELETE ON ledger.transaction
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER transaction_no_truncate BEFORE TRUNCATE ON ledger.transaction
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER tag_no_delete BEFORE DELETE ON ledger.tag
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER tag_no_truncate BEFORE TRUNCATE ON ledger.tag
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

RESET ROLE;
