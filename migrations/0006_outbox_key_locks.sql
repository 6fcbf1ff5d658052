-- Relays claim a till with FOR UPDATE SKIP LOCKED on a lock row per ordering key (schema/95_fiscal.sql).
-- depends: 0005_lean_purchase_path

SET ROLE festpay_owner;

CREATE TABLE ledger.outbox_key (
    topic        text NOT NULL,
    ordering_key text NOT NULL,
    PRIMARY KEY (topic, ordering_key)
);
COMMENT ON TABLE ledger.outbox_key IS
    'One lock row per ordering key (till) of a topic: a relay holds it FOR UPDATE (SKIP LOCKED for the others) '
    'while it handles the key''s requests in order. Rows are added by api.outbox_prepare, never by bookings.';

RESET ROLE;
