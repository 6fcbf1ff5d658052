-- Idempotency keys of the HTTP gateway (SPEC 6): requests that are not naturally identified carry an
-- Idempotency-Key; the first answer is kept here so that every gateway, side by side, returns it again.

SET ROLE festpay_owner;

CREATE TABLE ledger.idempotency_key (
    scope        text NOT NULL CHECK (length(scope) BETWEEN 1 AND 200),
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash text NOT NULL CHECK (request_hash ~ '^[0-9a-f]{64}$'),
    state        text NOT NULL CHECK (state IN ('running', 'done')),
    status       integer CHECK (status BETWEEN 100 AND 599),
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key),
    CONSTRAINT done_has_answer CHECK (state = 'running' OR (status IS NOT NULL AND response IS NOT NULL))
);
COMMENT ON TABLE ledger.idempotency_key IS
    'Idempotency-Key of a caller (scope): the hash of the first request and, once done, its answer; kept until expires_at.';
CREATE INDEX idempotency_key_expiry ON ledger.idempotency_key (expires_at);

RESET ROLE;
