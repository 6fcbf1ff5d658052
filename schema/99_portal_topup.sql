-- Online top-up through the payment provider: checkouts keyed by their reference (procedures/74_online_topup.sql).

SET ROLE festpay_owner;

-- An online top-up at the payment provider (SPEC 5 Open -> ExternalPending -> Committed/Aborted),
-- keyed by its checkout reference: the key we give the provider and it sends back in every webhook. Settling goes
-- through this row (locked), so a webhook sent twice, or a webhook and the relay's poll racing, book once.
CREATE TABLE ledger.external_checkout (
    reference      text PRIMARY KEY CHECK (reference ~ '^ft_[0-9a-f]{32}$'),
    transaction_id bigint NOT NULL UNIQUE REFERENCES ledger.transaction,
    checkout_id    text UNIQUE CHECK (length(checkout_id) BETWEEN 1 AND 200),
    created_at     timestamptz NOT NULL DEFAULT now(),
    settled_at     timestamptz,
    result         text CHECK (result IN ('paid', 'declined')),
    CHECK ((settled_at IS NULL) = (result IS NULL))
);
COMMENT ON TABLE ledger.external_checkout IS
    'An online top-up at the payment provider: our checkout reference (unique, sent to the provider), the top-up '
    'transaction, the provider''s checkout id, and the determinate result that settled it (booked once).';
