-- Outcomes of online top-ups (procedures/74_online_topup.sql): the event's check window, after which a checkout the
-- provider has not decided becomes ExternalUnknown; a payment the provider took that can no longer be booked, to be
-- refunded through the provider (schema/10_events.sql, schema/99_portal_topup.sql).
-- depends: 0016_online_topup

SET ROLE festpay_owner;

ALTER TABLE ledger.event
    ADD COLUMN provider_check_window interval NOT NULL DEFAULT '30 minutes'
        CHECK (provider_check_window > '0 seconds');
COMMENT ON COLUMN ledger.event.provider_check_window IS
    'How long the relay''s status checks wait for the payment provider''s determinate answer to an online top-up; a '
    'checkout still undecided after it becomes ExternalUnknown (checked on, decided by a late answer or an admin).';

ALTER TABLE ledger.external_checkout
    ADD COLUMN refund_state        text CHECK (refund_state IN ('due', 'requested', 'refunded', 'failed')),
    ADD COLUMN refund_reason       text CHECK (refund_reason IN ('tag-blocked', 'max-balance-exceeded', 'aborted')),
    ADD COLUMN refund_due_at       timestamptz,
    ADD COLUMN refund_requested_by text,
    ADD COLUMN refund_requested_at timestamptz,
    ADD COLUMN refund_id           text CHECK (length(refund_id) BETWEEN 1 AND 200),
    ADD COLUMN refunded_at         timestamptz,
    ADD COLUMN refund_error        text,
    ADD CONSTRAINT refund_rules CHECK (
        (refund_state IS NULL) = (refund_reason IS NULL) AND (refund_state IS NULL) = (refund_due_at IS NULL)
        AND coalesce(refund_state IN ('requested', 'refunded', 'failed'), false) = (refund_requested_at IS NOT NULL)
        AND coalesce(refund_state = 'refunded', false) = (refunded_at IS NOT NULL));
COMMENT ON TABLE ledger.external_checkout IS
    'An online top-up at the payment provider: our checkout reference (unique, sent to the provider), the top-up '
    'transaction, the provider''s checkout id, the determinate result that settled it (booked once), and the refund '
    'of a payment the provider took that could not be booked (due, requested by an admin, refunded or failed).';

-- The admin queue's provider-refund items: the few checkouts whose refund is not done.
CREATE INDEX external_checkout_refund_open ON ledger.external_checkout (refund_due_at)
    WHERE refund_state IN ('due', 'requested', 'failed');

RESET ROLE;
