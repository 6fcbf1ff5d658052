-- Tags (NFC wristbands): each is the key to one customer account.

SET ROLE festpay_owner;

CREATE TABLE ledger.tag (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint NOT NULL REFERENCES ledger.event,
    uid        text NOT NULL CHECK (uid ~ '^[0-9A-F]{8,20}$'),
    pin_hash   text,
    status     ledger.tag_status NOT NULL DEFAULT 'new',
    account_id bigint NOT NULL UNIQUE REFERENCES ledger.account,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tag_uid_unique UNIQUE (event_id, uid)
);
COMMENT ON TABLE ledger.tag IS 'An NFC tag: UID in upper-case hex, PIN stored as a bcrypt hash, status new (never topped up), active or blocked.';

RESET ROLE;
