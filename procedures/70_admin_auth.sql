SET LOCAL ROLE festpay_owner;

-- Admin sign-in, sessions, roles and the audit log. Passwords are bcrypt hashes (cost 12) checked here; a session
-- token is 32 random bytes (base64url) that only the admin's cookie holds, the database keeps its SHA-256. Every
-- admin api function takes that token first and passes it to ledger.admin_authorize with the privilege it needs
-- (ledger.admin_role_privilege), and writes a ledger.admin_audit row for every change in the same transaction.

-- ---------------------------------------------------------------- web sessions: the admin site's and the portal's
-- One home for the session rules both web audiences share (the portal's are in procedures/73_portal.sql).
DROP FUNCTION IF EXISTS ledger.admin_token_hash(text);          -- their admin-only forerunners
DROP FUNCTION IF EXISTS ledger.admin_random_token();
DROP FUNCTION IF EXISTS ledger.admin_session_valid(ledger.admin_session);

CREATE OR REPLACE FUNCTION ledger.token_hash(p_token text)
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
-- The SHA-256 of a session token: what ledger.admin_session and ledger.portal_session store instead of the token.
-- Returns 32 bytes (NULL for a NULL token).
    SELECT extensions.digest(convert_to(p_token, 'UTF8'), 'sha256');
$$;

CREATE OR REPLACE FUNCTION ledger.session_token()
RETURNS text LANGUAGE sql VOLATILE AS $$
-- A new random token for a session or its CSRF token: 32 random bytes.
-- Returns them as base64url without padding (43 characters).
    SELECT translate(encode(extensions.gen_random_bytes(32), 'base64'), '+/=', '-_');
$$;

CREATE OR REPLACE FUNCTION ledger.session_valid(p_created_at timestamptz, p_last_seen_at timestamptz,
                                                p_revoked_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
-- Tells whether a web session is still valid: not revoked, used within the last 30 minutes, at most 12 hours old.
-- Returns false when a time is NULL (no session).
    SELECT coalesce(p_revoked_at IS NULL AND p_last_seen_at > now() - interval '30 minutes'
                    AND p_created_at > now() - interval '12 hours', false);
$$;

CREATE OR REPLACE FUNCTION ledger.session_may_touch()
RETURNS boolean LANGUAGE sql STABLE AS $$
-- Tells whether a session check may touch the session's last_seen_at: not in a read-only or snapshot transaction
-- (the DSFinV-K export's), where the UPDATE would fail (read only) or conflict with the same session's next page.
-- Returns true in a read-write read committed transaction.
    SELECT current_setting('transaction_isolation') = 'read committed'
           AND NOT current_setting('transaction_read_only')::boolean;
$$;

CREATE OR REPLACE FUNCTION ledger.sign_in_locked(p_recent timestamptz[])
RETURNS boolean LANGUAGE sql STABLE AS $$
-- The lockout rule of every sign-in (admin password, portal PIN), given the newest failed attempts newest first (at
-- least the last five): locked while the last five lie within 15 minutes and the newest is less than 15 minutes
-- old. Attempts while locked are not recorded, so the lock ends 15 minutes after the fifth failure.
-- Returns true when locked (false for fewer than five failures or NULL).
    SELECT coalesce(cardinality(p_recent) >= 5 AND p_recent[1] - p_recent[5] <= interval '15 minutes'
                    AND p_recent[1] > now() - interval '15 minutes', false);
$$;

-- ---------------------------------------------------------------- the admin site

CREATE OR REPLACE FUNCTION ledger.admin_event_id()
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
-- The event the admin site runs: the newest event (highest id).
-- Returns its id; raises not-found when there is no event yet.
DECLARE
    v_id bigint;
BEGIN
    SELECT max(id) INTO v_id FROM ledger.event;
    IF v_id IS NULL THEN
        PERFORM ledger.fail('not-found', 'there is no event yet');
    END IF;
    RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_money(p_event_id bigint, p_cents bigint)
RETURNS text LANGUAGE sql STABLE AS $$
-- An amount of money as the admin site's messages say it: a decimal amount (ledger.money) and the event's currency.
-- Returns e.g. '14.50 EUR'.
    SELECT ledger.money(p_cents) || ' ' || e.currency FROM ledger.event e WHERE e.id = p_event_id;
$$;

CREATE OR REPLACE FUNCTION ledger.admin_audit(p_user_id bigint, p_action text, p_object text, p_before jsonb,
                                              p_after jsonb)
RETURNS void LANGUAGE sql AS $$
-- Writes one row of the admin audit log: who (NULL: a DBA), what, on which object, before and after.
-- Returns nothing; the row commits or rolls back with the change it describes.
    INSERT INTO ledger.admin_audit (user_id, action, object, before, after)
    VALUES (p_user_id, p_action, p_object, p_before, p_after);
$$;

CREATE OR REPLACE FUNCTION ledger.admin_authorize(p_token text, p_privilege text)
RETURNS ledger.admin_user LANGUAGE plpgsql AS $$
-- The one check of every admin function: the session of p_token is valid (ledger.session_valid), its user is
-- not disabled, and the user's role has p_privilege (NULL: any signed-in admin). Touches the session's last_seen_at
-- (skipped while another call of the same session holds its row, and in read-only or snapshot transactions).
-- Returns the admin user; raises admin-unauthenticated or admin-forbidden.
DECLARE
    s ledger.admin_session;
    u ledger.admin_user;
BEGIN
    SELECT * INTO s FROM ledger.admin_session WHERE token_hash = ledger.token_hash(p_token);
    IF FOUND AND ledger.session_valid(s.created_at, s.last_seen_at, s.revoked_at) THEN
        SELECT * INTO u FROM ledger.admin_user WHERE id = s.user_id AND NOT disabled;
    END IF;
    IF u.id IS NULL THEN
        PERFORM ledger.fail('admin-unauthenticated', 'sign in again: the session is missing, expired or revoked');
    END IF;
    IF p_privilege IS NOT NULL
       AND NOT EXISTS (SELECT FROM ledger.admin_role_privilege WHERE role = u.role AND privilege = p_privilege) THEN
        PERFORM ledger.fail('admin-forbidden', format('role %s lacks the privilege %s', u.role, p_privilege),
                            jsonb_build_object('role', u.role, 'privilege', p_privilege));
    END IF;
    IF ledger.session_may_touch() THEN
        UPDATE ledger.admin_session SET last_seen_at = now()
         WHERE id = (SELECT x.id FROM ledger.admin_session x WHERE x.id = s.id FOR NO KEY UPDATE SKIP LOCKED);
    END IF;
    RETURN u;
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_password_hash(p_password text, p_field text)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
-- Checks a new admin password (10 to 72 bytes: bcrypt reads no further) and hashes it with bcrypt, cost 12.
-- Returns the hash; raises validation naming the form field p_field.
BEGIN
    IF p_password IS NULL OR length(p_password) < 10 THEN
        PERFORM ledger.fail('validation', 'a password has at least 10 characters', jsonb_build_object('field', p_field));
    ELSIF octet_length(p_password) > 72 THEN
        PERFORM ledger.fail('validation', 'a password has at most 72 bytes', jsonb_build_object('field', p_field));
    END IF;
    RETURN extensions.crypt(p_password, extensions.gen_salt('bf', 12));
END
$$;

CREATE OR REPLACE FUNCTION ledger.admin_user_json(u ledger.admin_user)
RETURNS jsonb LANGUAGE sql STABLE AS $$
-- An admin user as the audit log shows it (never the password hash).
-- Returns {id, username, role, disabled, password_changed_at}, or NULL for a NULL user.
    SELECT CASE WHEN u.id IS NOT NULL THEN
        jsonb_build_object('id', u.id, 'username', u.username, 'role', u.role, 'disabled', u.disabled,
                           'password_changed_at', u.password_changed_at) END;
$$;

CREATE OR REPLACE FUNCTION ledger.admin_user_write(p_actor_id bigint, p_user_id bigint, p_username text, p_role text,
                                                   p_disabled boolean, p_password text)
RETURNS bigint LANGUAGE plpgsql AS $$
-- The one place admin users are created and changed, by an admin (p_actor_id) or a DBA (NULL): p_user_id NULL creates
-- (password required), else changes username, role, disabled and, unless p_password is NULL, the password. A new
-- password or disabling revokes the user's sessions; a new password also clears its sign-in failures (unlocks it).
-- At least one enabled user keeps the privilege users. Audited.
-- Returns the user id; raises validation naming the field (username, role, password), not-found.
DECLARE
    v_name text := lower(btrim(p_username));
    v_before ledger.admin_user;
    u ledger.admin_user;
BEGIN
    IF v_name IS NULL OR v_name !~ '^[a-z0-9][a-z0-9._@-]{0,63}$' THEN
        PERFORM ledger.fail('validation', 'a username is 1 to 64 letters, digits and . _ @ -, starting with a letter or digit',
                            '{"field": "username"}');
    END IF;
    IF p_role IS NULL OR NOT EXISTS (SELECT FROM ledger.admin_role WHERE name = p_role) THEN
        PERFORM ledger.fail('validation', format('there is no role %L', p_role), '{"field": "role"}');
    END IF;
    IF EXISTS (SELECT FROM ledger.admin_user WHERE username = v_name AND id IS DISTINCT FROM p_user_id) THEN
        PERFORM ledger.fail('validation', format('the username %s is taken', v_name), '{"field": "username"}');
    END IF;
    IF p_user_id IS NULL THEN
        INSERT INTO ledger.admin_user (username, password_hash, role, disabled)
        VALUES (v_name, ledger.admin_password_hash(p_password, 'password'), p_role, coalesce(p_disabled, false))
        RETURNING * INTO u;
    ELSE
        SELECT * INTO v_before FROM ledger.admin_user WHERE id = p_user_id FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            PERFORM ledger.fail('not-found', format('admin user %s does not exist', p_user_id));
        END IF;
        UPDATE ledger.admin_user
           SET username = v_name, role = p_role, disabled = coalesce(p_disabled, disabled),
               password_hash = CASE WHEN p_password IS NULL THEN password_hash
                                    ELSE ledger.admin_password_hash(p_password, 'password') END,
               password_changed_at = CASE WHEN p_password IS NULL THEN password_changed_at ELSE now() END
         WHERE id = p_user_id
        RETURNING * INTO u;
        IF u.disabled OR p_password IS NOT NULL THEN
            UPDATE ledger.admin_session SET revoked_at = now() WHERE user_id = u.id AND revoked_at IS NULL;
        END IF;
        IF p_password IS NOT NULL THEN
            DELETE FROM ledger.admin_sign_in_failure f WHERE f.user_id = u.id;      -- a new password unlocks the user
        END IF;
        -- Serialised by this lock (a statement after it sees the other's commit), so two admins demoting each other
        -- at once cannot both succeed.
        PERFORM pg_advisory_xact_lock(hashtext('festpay admin users'));
        IF NOT EXISTS (SELECT FROM ledger.admin_user x JOIN ledger.admin_role_privilege r ON r.role = x.role
                        WHERE NOT x.disabled AND r.privilege = 'users') THEN
            PERFORM ledger.fail('validation', 'at least one enabled admin user must keep the privilege to manage users',
                                jsonb_build_object('field', CASE WHEN u.disabled THEN 'disabled' ELSE 'role' END));
        END IF;
    END IF;
    PERFORM ledger.admin_audit(p_actor_id, CASE WHEN p_user_id IS NULL THEN 'user.create' ELSE 'user.update' END,
                               'admin_user:' || u.id, ledger.admin_user_json(v_before), ledger.admin_user_json(u));
    RETURN u.id;
END
$$;

CREATE OR REPLACE FUNCTION api.admin_sign_in(p_username text, p_password text, p_client text DEFAULT NULL)
RETURNS TABLE (outcome text, token text, csrf_token text, username text, role text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Signs an admin in: a new session with a new token and CSRF token. Refused alike (outcome 'refused', nothing else)
-- for an unknown user, a wrong password, a disabled user and a locked one: five wrong passwords of a user within 15
-- minutes lock it for 15 minutes. Every attempt spends one bcrypt hash, known user or not. A wrong password is
-- recorded (ledger.admin_sign_in_failure), so the answer is a row, never an error.
-- Returns one row: outcome 'ok' with token, csrf_token, username and role, or 'refused' with NULLs.
DECLARE
    u ledger.admin_user;
    v_password text := left(coalesce(p_password, ''), 1000);
    v_token text;
BEGIN
    outcome := 'refused';
    SELECT * INTO u FROM ledger.admin_user x WHERE x.username = lower(btrim(p_username)) FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM extensions.crypt(v_password, extensions.gen_salt('bf', 12));     -- as long as a known user takes
        RETURN NEXT;
        RETURN;
    END IF;
    -- Locked (ledger.sign_in_locked): attempts while locked are not counted.
    IF ledger.sign_in_locked(ARRAY(SELECT f.at FROM ledger.admin_sign_in_failure f WHERE f.user_id = u.id
                                    ORDER BY f.at DESC LIMIT 5)) THEN
        PERFORM extensions.crypt(v_password, u.password_hash);
        RETURN NEXT;
        RETURN;
    END IF;
    IF extensions.crypt(v_password, u.password_hash) IS DISTINCT FROM u.password_hash THEN
        INSERT INTO ledger.admin_sign_in_failure (user_id) VALUES (u.id);
        RETURN NEXT;
        RETURN;
    END IF;
    IF u.disabled THEN
        RETURN NEXT;
        RETURN;
    END IF;
    DELETE FROM ledger.admin_sign_in_failure f WHERE f.user_id = u.id;
    DELETE FROM ledger.admin_session s WHERE s.user_id = u.id AND s.created_at <= now() - interval '12 hours';
    v_token := ledger.session_token();
    INSERT INTO ledger.admin_session (user_id, token_hash, csrf_token, client)
    VALUES (u.id, ledger.token_hash(v_token), ledger.session_token(), left(p_client, 200))
    RETURNING admin_session.csrf_token INTO csrf_token;
    PERFORM ledger.admin_audit(u.id, 'sign-in', 'admin_user:' || u.id, NULL,
                               jsonb_build_object('client', left(p_client, 200)));
    outcome := 'ok'; token := v_token; username := u.username; role := u.role;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.admin_sign_in IS
    'Signs an admin in. Returns outcome ok with a new session token, CSRF token, username and role, or refused '
    '(unknown user, wrong password, disabled or locked alike).';

CREATE OR REPLACE FUNCTION api.admin_sign_out(p_token text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Signs out: revokes the session of p_token (audited). An unknown, expired or revoked token is no error.
-- Returns nothing.
DECLARE
    v_user bigint;
BEGIN
    UPDATE ledger.admin_session SET revoked_at = now()
     WHERE token_hash = ledger.token_hash(p_token) AND revoked_at IS NULL
    RETURNING user_id INTO v_user;
    IF FOUND THEN
        PERFORM ledger.admin_audit(v_user, 'sign-out', 'admin_user:' || v_user, NULL, NULL);
    END IF;
END
$$;
COMMENT ON FUNCTION api.admin_sign_out IS 'Signs out: revokes the session of a token (no error for an unknown one).';

CREATE OR REPLACE FUNCTION api.admin_whoami(p_token text)
RETURNS TABLE (user_id bigint, username text, role text, privileges text[], csrf_token text, event_id bigint,
               event_name text, currency text, time_zone text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Who is signed in with p_token, and the event the admin site runs (ledger.admin_event_id; NULLs before there is one).
-- Returns one row: the user, its role's privileges, the session's CSRF token, the event; raises admin-unauthenticated.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, NULL);
BEGIN
    user_id := u.id; username := u.username; role := u.role;
    SELECT array_agg(r.privilege ORDER BY array_position(ARRAY['view', 'setup', 'support', 'finance', 'users'], r.privilege))
      INTO privileges FROM ledger.admin_role_privilege r WHERE r.role = u.role;
    SELECT s.csrf_token INTO csrf_token FROM ledger.admin_session s WHERE s.token_hash = ledger.token_hash(p_token);
    SELECT e.id, e.name, e.currency, e.time_zone INTO event_id, event_name, currency, time_zone
      FROM ledger.event e ORDER BY e.id DESC LIMIT 1;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.admin_whoami IS
    'The signed-in admin (user, role, privileges, CSRF token) and the event the admin site runs.';

CREATE OR REPLACE FUNCTION api.admin_change_password(p_token text, p_old text, p_new text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Changes the signed-in admin's own password, revokes all of the user's sessions (this one too: sign in again) and
-- clears its sign-in failures.
-- Returns nothing; raises admin-unauthenticated, validation (field password: the current one is wrong;
-- new_password: the same as the current one, fewer than 10 characters or more than 72 bytes).
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, NULL);
    v_hash text;
BEGIN
    IF extensions.crypt(left(coalesce(p_old, ''), 1000), u.password_hash) IS DISTINCT FROM u.password_hash THEN
        PERFORM ledger.fail('validation', 'the current password is wrong', '{"field": "password"}');
    END IF;
    -- p_old is the current password (just checked), up to the 72 bytes bcrypt reads: beyond them only the hash tells.
    IF p_new = p_old OR (octet_length(p_old) > 72 AND extensions.crypt(p_new, u.password_hash) = u.password_hash) THEN
        PERFORM ledger.fail('validation', 'the new password must differ from the current one', '{"field": "new_password"}');
    END IF;
    v_hash := ledger.admin_password_hash(p_new, 'new_password');
    UPDATE ledger.admin_user SET password_hash = v_hash, password_changed_at = now() WHERE id = u.id;
    UPDATE ledger.admin_session SET revoked_at = now() WHERE user_id = u.id AND revoked_at IS NULL;
    DELETE FROM ledger.admin_sign_in_failure f WHERE f.user_id = u.id;
    PERFORM ledger.admin_audit(u.id, 'password.change', 'admin_user:' || u.id,
                               jsonb_build_object('password_changed_at', u.password_changed_at),
                               jsonb_build_object('password_changed_at', now()));
END
$$;
COMMENT ON FUNCTION api.admin_change_password IS
    'Changes the signed-in admin''s own password (at least 10 characters, not the current one) and revokes all of the '
    'user''s sessions.';

CREATE OR REPLACE FUNCTION api.create_admin_user(p_username text, p_role text, p_password text)
RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates an admin user, for a DBA (festpay admin create-user): ledger.admin_user_write, audited without a user.
-- Returns the user id; raises validation naming the field (username, role, password).
    SELECT ledger.admin_user_write(NULL, NULL, p_username, p_role, false, p_password);
$$;
COMMENT ON FUNCTION api.create_admin_user IS 'Creates an admin user with a role and password (a DBA''s). Returns the user id.';

CREATE OR REPLACE FUNCTION api.ensure_first_admin(p_password text)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates the first admin user, admin with role admin and p_password, when there is no admin user at all.
-- Returns true when it created one, false when a user exists; raises validation for a too short password.
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('festpay admin users'));
    IF EXISTS (SELECT FROM ledger.admin_user) THEN
        RETURN false;
    END IF;
    PERFORM ledger.admin_user_write(NULL, NULL, 'admin', 'admin', false, p_password);
    RETURN true;
END
$$;
COMMENT ON FUNCTION api.ensure_first_admin IS
    'Creates user admin (role admin) with the given password when no admin user exists. Returns true when it did.';

CREATE OR REPLACE FUNCTION api.admin_roles(p_token text)
RETURNS TABLE (name text, description text, privileges text[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The admin roles and their privileges, for the users page (privilege users).
-- Returns one row per role; raises admin-unauthenticated, admin-forbidden.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'users');
BEGIN
    RETURN QUERY
    SELECT r.name, r.description,
           array(SELECT p.privilege FROM ledger.admin_role_privilege p WHERE p.role = r.name
                  ORDER BY array_position(ARRAY['view', 'setup', 'support', 'finance', 'users'], p.privilege))
      FROM ledger.admin_role r
     ORDER BY array_position(ARRAY['admin', 'finance', 'support', 'viewer'], r.name), r.name;
END
$$;
COMMENT ON FUNCTION api.admin_roles IS 'The admin roles with their privileges (privilege users).';

CREATE OR REPLACE FUNCTION api.admin_users(p_token text)
RETURNS TABLE (id bigint, username text, role text, disabled boolean, created_at timestamptz,
               password_changed_at timestamptz, last_seen_at timestamptz, locked boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The admin users (privilege users), with when each was last seen and whether wrong passwords lock it now.
-- Returns one row per user by username; raises admin-unauthenticated, admin-forbidden.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'users');
BEGIN
    RETURN QUERY
    SELECT x.id, x.username, x.role, x.disabled, x.created_at, x.password_changed_at,
           (SELECT max(s.last_seen_at) FROM ledger.admin_session s WHERE s.user_id = x.id),
           ledger.sign_in_locked(ARRAY(SELECT f.at FROM ledger.admin_sign_in_failure f WHERE f.user_id = x.id
                                        ORDER BY f.at DESC LIMIT 5))
      FROM ledger.admin_user x
     ORDER BY x.username;
END
$$;
COMMENT ON FUNCTION api.admin_users IS 'The admin users with role, disabled, last seen and locked (privilege users).';

CREATE OR REPLACE FUNCTION api.admin_user_save(p_token text, p_user_id bigint, p_username text, p_role text,
                                               p_disabled boolean, p_password text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Creates (p_user_id NULL) or changes an admin user (privilege users): ledger.admin_user_write; p_password NULL keeps
-- the password. A new password or disabling revokes the user's sessions; a new password unlocks the user. Audited.
-- Returns the user id; raises admin-unauthenticated, admin-forbidden, validation naming the field, not-found.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'users');
BEGIN
    RETURN ledger.admin_user_write(u.id, p_user_id, p_username, p_role, p_disabled, nullif(p_password, ''));
END
$$;
COMMENT ON FUNCTION api.admin_user_save IS
    'Creates or changes an admin user (privilege users); a NULL password keeps it. Returns the user id.';

CREATE OR REPLACE FUNCTION api.admin_audit_log(p_token text, p_before_id bigint DEFAULT NULL, p_limit integer DEFAULT 100)
RETURNS TABLE (id bigint, at timestamptz, username text, action text, object text, before jsonb, after jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The admin audit log, newest first, p_limit (1 to 500) rows with ids below p_before_id (privilege users).
-- Returns one row per change (username NULL: a DBA); raises admin-unauthenticated, admin-forbidden.
DECLARE
    u ledger.admin_user := ledger.admin_authorize(p_token, 'users');
BEGIN
    RETURN QUERY
    SELECT a.id, a.at, x.username, a.action, a.object, a.before, a.after
      FROM ledger.admin_audit a LEFT JOIN ledger.admin_user x ON x.id = a.user_id
     WHERE a.id < coalesce(p_before_id, 9223372036854775807)
     ORDER BY a.id DESC
     LIMIT least(greatest(coalesce(p_limit, 100), 1), 500);
END
$$;
COMMENT ON FUNCTION api.admin_audit_log IS 'The admin audit log, newest first, keyset by id (privilege users).';
