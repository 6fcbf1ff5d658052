-- The admin site (schema/98_admin.sql): roles and their privileges, admin users (bcrypt password hashes), sessions
-- (only the SHA-256 of each token), failed sign-ins (lockout) and the append-only admin audit log; archived
-- merchants, positions and products, and revoked terminal assignments; problems FP070 to FP073.
-- depends: 0011_fiscal_one_rule

SET ROLE festpay_owner;

INSERT INTO ledger.problem (slug, sqlstate, http_status, title) VALUES
    ('admin-unauthenticated',       'FP070', 401, 'No valid admin session (missing, expired, revoked)'),
    ('admin-forbidden',             'FP071', 403, 'The admin''s role lacks the privilege for this action'),
    ('terminal-revoked',            'FP072', 401, 'The terminal''s assignment was revoked by an admin'),
    ('archived',                    'FP073', 422, 'The merchant, position or product is archived');

ALTER TABLE ledger.merchant ADD COLUMN archived boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN ledger.merchant.archived IS 'Archived: its positions sell nothing new; kept for reports.';
ALTER TABLE ledger.position ADD COLUMN archived boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN ledger.position.archived IS 'Archived: its terminals sell and top up nothing new, it gets no registration codes; kept for reports.';
ALTER TABLE ledger.product ADD COLUMN archived boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN ledger.product.archived IS 'Archived: not in the terminal configuration and not sellable; sold items keep it.';
ALTER TABLE ledger.assignment ADD COLUMN revoked_at timestamptz;
COMMENT ON COLUMN ledger.assignment.revoked_at IS 'When an admin revoked the terminal: every later call of it is refused (terminal-revoked).';

-- Privileges: view (every read page), setup (event, catalogue, terminals, tag import), support (customers, queue),
-- finance (closings, exports), users (admin users and the audit log).
CREATE TABLE ledger.admin_role (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,29}$'),
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 200)
);
COMMENT ON TABLE ledger.admin_role IS 'A role of admin users; what it may do is in ledger.admin_role_privilege.';

CREATE TABLE ledger.admin_role_privilege (
    role      text NOT NULL REFERENCES ledger.admin_role,
    privilege text NOT NULL CHECK (privilege IN ('view', 'setup', 'support', 'finance', 'users')),
    PRIMARY KEY (role, privilege)
);
COMMENT ON TABLE ledger.admin_role_privilege IS 'The privileges of each admin role (view, setup, support, finance, users); ledger.admin_authorize reads them.';

INSERT INTO ledger.admin_role (name, description) VALUES
    ('admin',   'Everything, including admin users and the audit log'),
    ('finance', 'Reports, cash-point closings and exports'),
    ('support', 'Customers, tags, transfers, chargebacks and the resolution queue'),
    ('viewer',  'Reads every page, changes nothing');
INSERT INTO ledger.admin_role_privilege (role, privilege) VALUES
    ('admin', 'view'), ('admin', 'setup'), ('admin', 'support'), ('admin', 'finance'), ('admin', 'users'),
    ('finance', 'view'), ('finance', 'finance'),
    ('support', 'view'), ('support', 'support'),
    ('viewer', 'view');

CREATE TABLE ledger.admin_user (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username            text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    password_hash       text NOT NULL CHECK (password_hash ~ '^\$2[abxy]\$[0-9]{2}\$'),
    role                text NOT NULL REFERENCES ledger.admin_role,
    disabled            boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ledger.admin_user IS 'An admin of the admin site: lower-case username, bcrypt password hash (readable by the owner only), role; disabled users cannot sign in.';

-- A session is known by the SHA-256 of its token only: the token itself lives in the admin's cookie.
CREATE TABLE ledger.admin_session (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES ledger.admin_user,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    csrf_token   text NOT NULL CHECK (length(csrf_token) >= 32),
    client       text CHECK (length(client) <= 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
COMMENT ON TABLE ledger.admin_session IS 'A signed-in admin: SHA-256 of the session token, the CSRF token of its forms; valid for 30 idle minutes and 12 hours at most, unless revoked.';
CREATE INDEX admin_session_user ON ledger.admin_session (user_id);

CREATE TABLE ledger.admin_sign_in_failure (
    user_id bigint NOT NULL REFERENCES ledger.admin_user,
    at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ledger.admin_sign_in_failure IS 'A wrong password for a known admin user: five within 15 minutes lock the user for 15 minutes.';
CREATE INDEX admin_sign_in_failure_user ON ledger.admin_sign_in_failure (user_id, at);

-- Who did what and when in the admin site (user_id NULL: a DBA, e.g. festpay admin create-user).
CREATE TABLE ledger.admin_audit (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    user_id bigint REFERENCES ledger.admin_user,
    action  text NOT NULL CHECK (action ~ '^[a-z][a-z0-9.-]{0,63}$'),
    object  text CHECK (length(object) <= 200),
    before  jsonb,
    after   jsonb
);
COMMENT ON TABLE ledger.admin_audit IS 'The admin audit log: every change an admin makes, with the object before and after, written in the same transaction. Append-only.';

CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON ledger.admin_audit
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON ledger.admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

RESET ROLE;
