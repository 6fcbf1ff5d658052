-- The admin site's operations pages (procedures/72_admin_operations.sql): reviews of violations in the resolution
-- queue, the kept hourly sales of the sales-per-hour report, and two partial indexes on ledger.transaction.

SET ROLE festpay_owner;

CREATE TABLE ledger.violation_review (
    violation_id bigint PRIMARY KEY,   -- no foreign key: TRUNCATE of ledger.violation must meet its append-only trigger
    reviewed_at  timestamptz NOT NULL DEFAULT now(),
    reviewed_by  text NOT NULL CHECK (length(reviewed_by) BETWEEN 1 AND 64)
);
COMMENT ON TABLE ledger.violation_review IS
    'A violation an admin has reviewed in the resolution queue (who, when; the reason is in the admin audit log). Append-only.';
CREATE TRIGGER violation_review_append_only BEFORE UPDATE OR DELETE ON ledger.violation_review
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER violation_review_no_truncate BEFORE TRUNCATE ON ledger.violation_review
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

-- A whole hour that ended more than ledger.longest_booking() ago can gain or lose no committed purchase: its sums are
-- kept here the first time a report needs them, so the sales-per-hour report reads at most the last hour or so of
-- transactions.
CREATE TABLE ledger.sales_hour (
    event_id  bigint NOT NULL REFERENCES ledger.event,
    time_zone text NOT NULL,
    hour      timestamptz NOT NULL,
    sales     bigint NOT NULL CHECK (sales >= 0),
    gross     bigint NOT NULL,
    PRIMARY KEY (event_id, time_zone, hour)
);
COMMENT ON TABLE ledger.sales_hour IS
    'The committed purchases of a whole past hour (in the event''s time zone, by committed_at), kept by ledger.sales_hours '
    'once the hour can no longer change: how many and their amount in cents.';

-- A customer's transactions that are not booked (reserves, aborted, expired; booked ones are found through the booking
-- lines' account indexes): a purchase adds one entry, at its reserve (Committed rows are not in it).
CREATE INDEX transaction_unbooked_by_account ON ledger.transaction (account_id) WHERE state <> 'Committed';
-- Transactions committed more than 15 minutes after their creation (an unknown outcome decided late, an expired
-- reserve replicated): every other committed transaction lies in the id slice of its creation time, so a time window on
-- committed_at needs no index of its own (ledger.committed_in). A purchase never enters it.
CREATE INDEX transaction_late_commit ON ledger.transaction (committed_at)
    WHERE committed_at - created_at > interval '15 minutes';

RESET ROLE;
