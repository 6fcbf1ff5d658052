-- The customer portal: sessions of visitors signed in with a tag's UID and PIN (only the SHA-256 of each token) and
-- failed PINs (lockout); the problem portal-unauthenticated.

SET ROLE festpay_owner;

INSERT INTO ledger.problem (slug, sqlstate, http_status, title) VALUES
    ('portal-unauthenticated',      'FP074', 401, 'No valid portal session (missing, expired, revoked)');

-- A portal session is known by the SHA-256 of its token only (ledger.token_hash): the token lives in the visitor's
-- cookie. The session rules are the admin site's (ledger.session_valid): 30 idle minutes, 12 hours at most.
CREATE TABLE ledger.portal_session (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tag_id       bigint NOT NULL REFERENCES ledger.tag,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    csrf_token   text NOT NULL CHECK (length(csrf_token) >= 32),
    client       text CHECK (length(client) <= 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
COMMENT ON TABLE ledger.portal_session IS 'A visitor signed in to the customer portal with a tag''s UID and PIN: SHA-256 of the session token, the CSRF token of its forms; valid for 30 idle minutes and 12 hours at most, unless revoked.';
CREATE INDEX portal_session_tag ON ledger.portal_session (tag_id);

CREATE TABLE ledger.portal_sign_in_failure (
    tag_id bigint NOT NULL REFERENCES ledger.tag,
    at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ledger.portal_sign_in_failure IS 'A wrong PIN for a tag in the customer portal: five within 15 minutes lock the tag''s portal sign-in for 15 minutes.';
CREATE INDEX portal_sign_in_failure_tag ON ledger.portal_sign_in_failure (tag_id, at);

RESET ROLE;
