-- Fiscal signing (SPEC 8): the outbox through which outside parties hear of commits, the signatures the TSE
-- gave, and the record of TSE outages.

SET ROLE festpay_owner;

-- The outbox is the one mechanism for "something outside must hear about a commit": a row per (topic,
-- transaction), written in the booking's own database transaction. Relays take the rows of one ordering key at a
-- time (its ledger.outbox_key row, FOR UPDATE SKIP LOCKED), in id order, so requests of one till are handled in order
-- and two relays never take the same row. NOTIFY only wakes a relay; this table is the truth, so a relay that was
-- down catches up.
CREATE TABLE ledger.outbox (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic          ledger.topic NOT NULL,
    ordering_key   ledger.ordering_key NOT NULL,
    transaction_id bigint NOT NULL,    -- no foreign key: see ledger.transaction
    created_at     timestamptz NOT NULL DEFAULT now(),
    attempts       integer NOT NULL DEFAULT 0,
    retry_at       timestamptz,
    last_error     text,
    started        jsonb,
    done_at        timestamptz,
    CONSTRAINT outbox_once UNIQUE (topic, transaction_id)
);
COMMENT ON TABLE ledger.outbox IS
    'Requests to outside parties (topic tse: sign this receipt), one per transaction and topic, handled in id order '
    'per ordering_key (the till); started keeps what the outside party already began (the TSE transaction number).';
CREATE INDEX outbox_pending ON ledger.outbox (topic, ordering_key, id) WHERE done_at IS NULL;

CREATE TABLE ledger.outbox_key (
    topic        ledger.topic NOT NULL,
    ordering_key ledger.ordering_key NOT NULL,
    PRIMARY KEY (topic, ordering_key)
);
COMMENT ON TABLE ledger.outbox_key IS
    'One lock row per ordering key (till) of a topic: a relay holds it FOR UPDATE (SKIP LOCKED for the others) '
    'while it handles the key''s requests in order. Rows are added by api.outbox_prepare, never by bookings.';

-- Whether the relays of a topic sleep (wait for NOTIFY). NOTIFY takes a database-wide lock at commit that serialises
-- every notifying transaction (measured: 80 % of backends waiting, purchases/s halved), so a booking notifies only
-- when a relay has said it is going to sleep, and the first one to see that flips it back: one NOTIFY per sleep.
CREATE TABLE ledger.relay_wakeup (
    topic  ledger.topic PRIMARY KEY,
    asleep boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE ledger.relay_wakeup IS 'Per topic: a relay waits for NOTIFY (asleep), so the next enqueue sends one.';

CREATE TABLE ledger.tse_signature (
    transaction_id    bigint PRIMARY KEY REFERENCES ledger.transaction,
    tse_serial        text NOT NULL CHECK (tse_serial ~ '^[0-9a-f]{64}$'),
    client_id         text NOT NULL,
    process_type      text NOT NULL,
    process_data      text NOT NULL,
    tse_tx_number     bigint NOT NULL CHECK (tse_tx_number > 0),
    signature_counter bigint NOT NULL CHECK (signature_counter > 0),
    start_time        timestamptz NOT NULL,
    log_time          timestamptz NOT NULL,
    algorithm         text NOT NULL,
    signature         bytea NOT NULL,
    public_key        bytea NOT NULL,
    signed_at         timestamptz NOT NULL DEFAULT now(),
    late              boolean NOT NULL,
    CONSTRAINT counter_unique UNIQUE (tse_serial, signature_counter),
    CONSTRAINT tse_tx_unique UNIQUE (tse_serial, tse_tx_number)
);
COMMENT ON TABLE ledger.tse_signature IS
    'The TSE''s signature of a receipt: what was signed and the values a verifier needs; late = signed after an outage '
    'began for it (its receipt said the TSE had failed). Append-only.';

CREATE TABLE ledger.tse_outage (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz,
    cause      text NOT NULL,
    CONSTRAINT ends_after_start CHECK (ended_at IS NULL OR ended_at >= started_at)
);
COMMENT ON TABLE ledger.tse_outage IS 'When the TSE could not sign (start, end, cause), as KassenSichV asks to record.';
CREATE UNIQUE INDEX tse_outage_one_open ON ledger.tse_outage ((true)) WHERE ended_at IS NULL;

CREATE TRIGGER tse_signature_append_only BEFORE UPDATE OR DELETE ON ledger.tse_signature
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER tse_signature_no_truncate BEFORE TRUNCATE ON ledger.tse_signature
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

RESET ROLE;
