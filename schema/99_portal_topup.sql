-- Online top-up through the payment provider: checkouts keyed by their reference (procedures/74_online_topup.sql).

SET ROLE festpay_owner;

-- An online top-up at the payment provider (SPEC 5 Open -> ExternalPending -> Committed/Aborted, or ExternalUnknown
-- first), keyed by its checkout reference: the key we give the provider and it sends back in every webhook. Settling
-- goes through this row (locked), so a webhook sent twice, or a webhook and the relay's poll racing, book once.
CREATE TABLE ledger.external_checkout (
    reference      text PRIMARY KEY CHECK (reference ~ '^ft_[0-9a-f]{32}$'),
    transaction_id bigint NOT NULL UNIQUE REFERENCES ledger.transaction,
    checkout_id    text UNIQUE CHECK (length(checkout_id) BETWEEN 1 AND 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    settled_at     timestamptz,
    result         text CHECK (result IN ('paid', 'declined')),
    CHECK ((settled_at IS NULL) = (result IS NULL)),
    -- A payment the provider took that could not be booked (the tag blocked meanwhile, the maximum balance reached,
    -- the top-up already Aborted): the admin queue shows it until it is refunded through the provider.
    refund_state        text CHECK (refund_state IN ('due', 'requested', 'refunded', 'failed')),
    refund_reason       text CHECK (refund_reason IN ('tag-blocked', 'max-balance-exceeded', 'aborted')),
    refund_due_at       timestamptz,
    refund_requested_by text,
    refund_requested_at timestamptz,
    refund_id           text CHECK (length(refund_id) BETWEEN 1 AND 200),
    refunded_at         timestamptz,
    refund_error        text,
    CONSTRAINT refund_rules CHECK (
        (refund_state IS NULL) = (refund_reason IS NULL) AND (refund_state IS NULL) = (refund_due_at IS NULL)
        AND coalesce(refund_state IN ('requested', 'refunded', 'failed'), false) = (refund_requested_at IS NOT NULL)
        AND coalesce(refund_state = 'refunded', false) = (refunded_at IS NOT NULL))
);
COMMENT ON TABLE ledger.external_checkout IS
    'An online top-up at the payment provider: our checkout reference (unique, sent to the provider), the top-up '
    'transaction, the provider''s checkout id, the determinate result that settled it (booked once), and the refund '
    'of a payment the provider took that could not be booked (due, requested by an admin, refunded or failed).';
-- The admin queue's provider-refund items: the few checkouts whose refund is not done.
CREATE INDEX external_checkout_refund_open ON ledger.external_checkout (refund_due_at)
    WHERE refund_state IN ('due', 'requested', 'failed');

COMMENT ON COLUMN ledger.event.provider_check_window IS
    'How long the relay''s status checks wait for the payment provider''s determinate answer to an online top-up; a '
    'checkout still undecided after it becomes ExternalUnknown (checked on, decided by a late answer or an admin).';
