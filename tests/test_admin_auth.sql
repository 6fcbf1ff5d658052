-- Admin sign-in, sessions, roles, users and the audit log: bcrypt passwords checked in the database, a new random
-- token at every sign-in stored only as its SHA-256, sessions that end after 30 idle minutes, after 12 hours, at
-- sign-out and at a password change; five wrong passwords lock a user for 15 minutes and the answer never tells
-- whether a user exists; every admin function checks the privilege of the caller's role and refuses the others
-- with a named error, changing nothing; every change leaves an audit row; no audience role reads a hash.
BEGIN;
SELECT plan(143);

-- ---------------------------------------------------------------- helpers
-- The outcome of a sign-in.
CREATE FUNCTION pg_temp.outcome(p_name text, p_password text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT outcome FROM api.admin_sign_in(p_name, coalesce(p_password, 'pw-' || p_name)) $$;
-- Everything the admin functions of this suite change, as one text: users, sessions, failures, audit rows.
CREATE FUNCTION pg_temp.footprint() RETURNS text LANGUAGE sql AS $$
    SELECT md5(concat_ws('|',
        (SELECT string_agg(format('%s %s %s %s %s %s', id, username, password_hash, role, disabled, password_changed_at), ',' ORDER BY id) FROM ledger.admin_user),
        (SELECT string_agg(format('%s %s %s %s', id, user_id, last_seen_at, revoked_at), ',' ORDER BY id) FROM ledger.admin_session),
        (SELECT count(*) FROM ledger.admin_sign_in_failure),
        (SELECT count(*) || ' ' || max(id) FROM ledger.admin_audit))) $$;
-- How many milliseconds a statement takes.
CREATE FUNCTION pg_temp.ms(p_sql text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE p_sql;
    RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;

-- ---------------------------------------------------------------- the first admin (only on a database without admin users)
CREATE FUNCTION pg_temp.first_admin() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM ledger.admin_user) THEN
        RETURN NEXT skip('this database has admin users already (a suite committed some)', 4);
        RETURN;
    END IF;
    RETURN NEXT throws_ok($q$SELECT api.ensure_first_admin('short')$q$, 'FP001', 'validation: a password has at least 10 characters',
                          'the first admin''s password needs 10 characters');
    RETURN NEXT ok(api.ensure_first_admin('first-admin-password'), 'without admin users, ensure_first_admin creates one');
    RETURN NEXT results_eq($q$SELECT username, role, disabled, password_hash ~ '^\$2a\$12\$' FROM ledger.admin_user$q$,
                           $q$VALUES ('admin'::text, 'admin'::text, false, true)$q$,
                           'it is admin, role admin, hashed with bcrypt cost 12');
    RETURN NEXT is(pg_temp.outcome('admin', 'first-admin-password'), 'ok', 'admin signs in with that password');
END $$;
SELECT * FROM pg_temp.first_admin();
SELECT ok(NOT api.ensure_first_admin('another-password'), 'with an admin user, ensure_first_admin does nothing');

-- ---------------------------------------------------------------- fixtures
INSERT INTO test.ctx SELECT 'e', test.event('pgTAP admin auth');
INSERT INTO test.ctx SELECT 'boss', api.create_admin_user(' PgTAP-Boss ', 'admin', 'boss-password-123');
INSERT INTO test.ctx SELECT role, user_id FROM test.admin_sessions('pgtap-');   -- pgtap-admin ... pgtap-viewer, signed in

-- ---------------------------------------------------------------- problems, roles and privileges
SELECT results_eq($$SELECT slug, sqlstate, http_status FROM api.problem_types() WHERE sqlstate BETWEEN 'FP070' AND 'FP073'$$,
                  $$VALUES ('admin-unauthenticated'::text, 'FP070'::text, 401), ('admin-forbidden', 'FP071', 403),
                           ('terminal-revoked', 'FP072', 401), ('archived', 'FP073', 422)$$,
                  'the admin problems are named: FP070 to FP073');
SELECT set_eq($$SELECT role, privilege FROM ledger.admin_role_privilege$$,
              $$VALUES ('admin', 'view'), ('admin', 'setup'), ('admin', 'support'), ('admin', 'finance'), ('admin', 'users'),
                       ('finance', 'view'), ('finance', 'finance'), ('support', 'view'), ('support', 'support'),
                       ('viewer', 'view')$$,
              'roles and privileges: admin all five, finance view+finance, support view+support, viewer view');

-- ---------------------------------------------------------------- create_admin_user (a DBA's)
SELECT results_eq($$SELECT username, role, password_hash ~ '^\$2a\$12\$' FROM ledger.admin_user WHERE id = test.v('boss')$$,
                  $$VALUES ('pgtap-boss'::text, 'admin'::text, true)$$,
                  'create_admin_user: the username trimmed and lower-cased, the password hashed with bcrypt cost 12');
SELECT is((SELECT format('%s %s by %s', action, object, coalesce(user_id::text, 'a DBA')) FROM ledger.admin_audit
            WHERE object = 'admin_user:' || test.v('boss')),
          format('user.create admin_user:%s by a DBA', test.v('boss')), 'creating a user is audited (no user: a DBA)');
SELECT ok((SELECT NOT (after ? 'password_hash') AND NOT after::text LIKE '%$2a$%' FROM ledger.admin_audit
            WHERE object = 'admin_user:' || test.v('boss')), 'the audit row carries no password hash');
SELECT throws_ok($$SELECT api.create_admin_user('pgtap-boss', 'viewer', 'another-password')$$, 'FP001',
                 'validation: the username pgtap-boss is taken', 'a taken username is refused');
SELECT is(test.error_detail($$SELECT api.create_admin_user('pgtap-x', 'viewer', 'short')$$), '{"field": "password"}'::jsonb,
          'a password of fewer than 10 characters is refused next to the field password');
SELECT is(test.error_detail($$SELECT api.create_admin_user('pgtap-x', 'superuser', 'long-enough-password')$$),
          '{"field": "role"}'::jsonb, 'an unknown role is refused next to the field role');
SELECT is(test.error_detail($$SELECT api.create_admin_user('-bad name', 'viewer', 'long-enough-password')$$),
          '{"field": "username"}'::jsonb, 'a bad username is refused next to the field username');
SELECT is(test.error_detail($$SELECT api.create_admin_user('pgtap-x', 'viewer', repeat('ä', 40))$$),
          '{"field": "password"}'::jsonb, 'a password of more than 72 bytes (what bcrypt reads) is refused');

-- ---------------------------------------------------------------- sign-in
SELECT lives_ok($$INSERT INTO test.res SELECT 'boss', to_jsonb(s) FROM api.admin_sign_in('PgTAP-Boss', 'boss-password-123', 'pgTAP') s$$,
                'the boss signs in (username in any case)');
SELECT is(test.res('boss', 'outcome'), 'ok', 'outcome ok');
SELECT results_eq($$SELECT test.res('boss', 'username'), test.res('boss', 'role')$$, $$VALUES ('pgtap-boss'::text, 'admin'::text)$$,
                  'the answer names the user and the role');
SELECT ok(test.res('boss', 'token') ~ '^[A-Za-z0-9_-]{43}$', 'the token is 32 random bytes in base64url (43 characters)');
SELECT ok(test.res('boss', 'csrf_token') ~ '^[A-Za-z0-9_-]{43}$' AND test.res('boss', 'csrf_token') <> test.res('boss', 'token'),
          'the CSRF token is another 32 random bytes');
SELECT is((SELECT count(*)::integer FROM ledger.admin_session WHERE token_hash = sha256(convert_to(test.res('boss', 'token'), 'UTF8'))),
          1, 'the session is stored under the SHA-256 of the token');
SELECT is_empty($$SELECT FROM ledger.admin_session s WHERE position(convert_to(test.res('boss', 'token'), 'UTF8') IN s.token_hash) > 0
                      OR s.csrf_token = test.res('boss', 'token') OR s.client = test.res('boss', 'token')$$,
                'the token itself is stored nowhere');
SELECT isnt(test.admin_sign_in('pgtap-boss', 'boss-password-123'), test.res('boss', 'token'), 'a second sign-in gets a new token');
SELECT is(test.last_audit(), 'sign-in admin_user:' || test.v('boss') || ' by pgtap-boss', 'a sign-in is audited');
SELECT results_eq($$SELECT * FROM api.admin_sign_in('pgtap-boss', 'wrong-password')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text, NULL::text)$$, 'a wrong password: refused, nothing else');
SELECT results_eq($$SELECT * FROM api.admin_sign_in('pgtap-nobody', 'boss-password-123')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text, NULL::text)$$,
                  'an unknown user: the very same answer');
SELECT results_eq($$SELECT * FROM api.admin_sign_in(NULL, NULL)$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text, NULL::text)$$, 'no username: the same');
SELECT ok(pg_temp.ms($$SELECT * FROM api.admin_sign_in('pgtap-nobody', 'x')$$) > 20,
          'an unknown user costs a bcrypt hash all the same (more than 20 ms)');

-- ---------------------------------------------------------------- whoami
SELECT results_eq(format($$SELECT user_id, username, role, privileges, csrf_token, event_id, event_name, currency, time_zone
                           FROM api.admin_whoami(%L)$$, test.res('boss', 'token')),
                  $$VALUES (test.v('boss'), 'pgtap-boss'::text, 'admin'::text, '{view,setup,support,finance,users}'::text[],
                            test.res('boss', 'csrf_token'), test.e(), 'pgTAP admin auth'::text, 'EUR'::text, 'Europe/Berlin'::text)$$,
                  'whoami: the user, its privileges, the session''s CSRF token and the newest event');
SELECT results_eq(format($$SELECT role, privileges FROM api.admin_whoami(%L)$$, test.admin_token('viewer')),
                  $$VALUES ('viewer'::text, '{view}'::text[])$$, 'whoami of a viewer: privilege view only');
SELECT throws_ok($$SELECT * FROM api.admin_whoami('no-such-token')$$, 'FP070', NULL, 'whoami with an unknown token: admin-unauthenticated');
SELECT throws_ok($$SELECT * FROM api.admin_whoami(NULL)$$, 'FP070', NULL, 'whoami without a token: admin-unauthenticated');

-- ---------------------------------------------------------------- lockout
INSERT INTO test.ctx SELECT 'lock', test.admin_user('pgtap-lock', 'viewer');
SELECT is(ARRAY[pg_temp.outcome('pgtap-lock', 'wrong-1'), pg_temp.outcome('pgtap-lock', 'wrong-2'),
                pg_temp.outcome('pgtap-lock', 'wrong-3'), pg_temp.outcome('pgtap-lock', 'wrong-4')],
          ARRAY['refused', 'refused', 'refused', 'refused'], 'four wrong passwords: refused');
SELECT is((SELECT count(*)::integer FROM ledger.admin_sign_in_failure WHERE user_id = test.v('lock')), 4, 'four failures recorded');
SELECT is(pg_temp.outcome('pgtap-lock'), 'ok', 'after four, the right password still signs in');
SELECT is((SELECT count(*)::integer FROM ledger.admin_sign_in_failure WHERE user_id = test.v('lock')), 0,
          'a sign-in clears the failures');
SELECT is(ARRAY[pg_temp.outcome('pgtap-lock', 'wrong-1'), pg_temp.outcome('pgtap-lock', 'wrong-2'),
                pg_temp.outcome('pgtap-lock', 'wrong-3'), pg_temp.outcome('pgtap-lock', 'wrong-4'),
                pg_temp.outcome('pgtap-lock', 'wrong-5')],
          ARRAY['refused', 'refused', 'refused', 'refused', 'refused'], 'five wrong passwords within 15 minutes');
SELECT results_eq($$SELECT * FROM api.admin_sign_in('pgtap-lock', 'pw-pgtap-lock')$$,
                  $$VALUES ('refused'::text, NULL::text, NULL::text, NULL::text, NULL::text)$$,
                  'locked: the right password is refused, with the same answer as a wrong one');
SELECT is((SELECT count(*)::integer FROM ledger.admin_sign_in_failure WHERE user_id = test.v('lock')), 5,
          'attempts while locked are not counted (the lock ends 15 minutes after the fifth failure)');
SELECT ok((SELECT locked FROM api.admin_users(test.admin_token('admin')) WHERE username = 'pgtap-lock'), 'the users page shows it locked');
UPDATE ledger.admin_sign_in_failure SET at = at - interval '14 minutes' WHERE user_id = test.v('lock');
SELECT is(pg_temp.outcome('pgtap-lock'), 'refused', '14 minutes later: still locked');
UPDATE ledger.admin_sign_in_failure SET at = at - interval '1 minute 1 second' WHERE user_id = test.v('lock');
SELECT is(pg_temp.outcome('pgtap-lock'), 'ok', '15 minutes after the fifth failure the lock is over');
SELECT is(ARRAY[pg_temp.outcome('pgtap-lock', 'wrong-1'), pg_temp.outcome('pgtap-lock', 'wrong-2'),
                pg_temp.outcome('pgtap-lock', 'wrong-3'), pg_temp.outcome('pgtap-lock', 'wrong-4'),
                pg_temp.outcome('pgtap-lock', 'wrong-5')],
          ARRAY['refused', 'refused', 'refused', 'refused', 'refused'], 'five wrong passwords again');
UPDATE ledger.admin_sign_in_failure SET at = at - interval '16 minutes'
 WHERE ctid = (SELECT ctid FROM ledger.admin_sign_in_failure WHERE user_id = test.v('lock') LIMIT 1);
SELECT is(pg_temp.outcome('pgtap-lock'), 'ok', 'five failures that span more than 15 minutes lock nothing');
-- An admin who sets a new password for a locked user unlocks it; a change without a password does not.
INSERT INTO ledger.admin_sign_in_failure (user_id) SELECT test.v('lock') FROM generate_series(1, 5);
SELECT ok((SELECT locked FROM api.admin_users(test.admin_token('admin')) WHERE username = 'pgtap-lock'), 'locked again (five failures)');
SELECT lives_ok(format($$SELECT api.admin_user_save(%L, test.v('lock'), 'pgtap-lock', 'support', false, NULL)$$, test.admin_token('admin')),
                'the admin changes its role, keeping the password');
SELECT ok((SELECT locked FROM api.admin_users(test.admin_token('admin')) WHERE username = 'pgtap-lock'), '... it stays locked');
SELECT lives_ok(format($$SELECT api.admin_user_save(%L, test.v('lock'), 'pgtap-lock', 'support', false, 'reset-lock-password')$$,
                       test.admin_token('admin')), 'the admin sets a new password');
SELECT is((SELECT count(*)::integer FROM ledger.admin_sign_in_failure WHERE user_id = test.v('lock')), 0,
          'a new password clears the sign-in failures');
SELECT ok(NOT (SELECT locked FROM api.admin_users(test.admin_token('admin')) WHERE username = 'pgtap-lock'), 'the users page shows it unlocked');
SELECT is(pg_temp.outcome('pgtap-lock', 'reset-lock-password'), 'ok', 'the user signs in with the new password at once');
SELECT is(pg_temp.outcome('pgtap-nobody', 'x') || pg_temp.outcome('pgtap-nobody', 'x') || pg_temp.outcome('pgtap-nobody', 'x')
          || pg_temp.outcome('pgtap-nobody', 'x') || pg_temp.outcome('pgtap-nobody', 'x') || pg_temp.outcome('pgtap-nobody', 'x'),
          repeat('refused', 6), 'an unknown user is refused every time, as a locked one would be');

-- ---------------------------------------------------------------- disabled users
INSERT INTO test.ctx SELECT 'off', test.admin_user('pgtap-off', 'viewer');
INSERT INTO test.res SELECT 'off', jsonb_build_object('token', test.admin_sign_in('pgtap-off'));
UPDATE ledger.admin_user SET disabled = true WHERE id = test.v('off');
SELECT is(pg_temp.outcome('pgtap-off'), 'refused', 'a disabled user is refused with the right password');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('off', 'token')), 'FP070', NULL,
                 'a disabled user''s open session is no longer valid');

-- ---------------------------------------------------------------- session expiry
INSERT INTO test.ctx SELECT 'idle', test.admin_user('pgtap-idle', 'viewer');
INSERT INTO test.res SELECT 'idle', jsonb_build_object('token', test.admin_sign_in('pgtap-idle'));
UPDATE ledger.admin_session SET last_seen_at = now() - interval '29 minutes', created_at = now() - interval '11 hours'
 WHERE user_id = test.v('idle');
SELECT lives_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('idle', 'token')),
                'used 29 minutes ago (and 11 hours old): still valid');
SELECT is((SELECT last_seen_at FROM ledger.admin_session WHERE user_id = test.v('idle')), now(), 'the call touched last_seen_at');
UPDATE ledger.admin_session SET last_seen_at = now() - interval '30 minutes' WHERE user_id = test.v('idle');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('idle', 'token')), 'FP070', NULL,
                 'idle for 30 minutes: admin-unauthenticated');
UPDATE ledger.admin_session SET last_seen_at = now() WHERE user_id = test.v('idle');
SELECT lives_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('idle', 'token')), 'used just now: valid again');
UPDATE ledger.admin_session SET created_at = now() - interval '12 hours' WHERE user_id = test.v('idle');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('idle', 'token')), 'FP070', NULL,
                 '12 hours after sign-in: admin-unauthenticated, however busy');
SELECT throws_ok(format($$SELECT * FROM api.admin_users(%L)$$, test.res('idle', 'token')), 'FP070', NULL,
                 'an expired session is refused as unauthenticated before any privilege check');

-- ---------------------------------------------------------------- sign-out
INSERT INTO test.res SELECT 'out', jsonb_build_object('token', test.admin_sign_in('pgtap-viewer'));
SELECT lives_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('out', 'token')), 'a second session of the viewer');
SELECT lives_ok(format($$SELECT api.admin_sign_out(%L)$$, test.res('out', 'token')), 'sign-out');
SELECT is(test.last_audit(), 'sign-out admin_user:' || test.v('viewer') || ' by pgtap-viewer', 'a sign-out is audited');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('out', 'token')), 'FP070', NULL,
                 'a signed-out session: admin-unauthenticated');
SELECT lives_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.admin_token('viewer')), 'the viewer''s other session lives on');
CREATE TEMP TABLE before AS SELECT test.audits() AS n;
SELECT lives_ok($$SELECT api.admin_sign_out('no-such-token'), api.admin_sign_out(NULL)$$, 'signing out an unknown token is no error');
SELECT lives_ok(format($$SELECT api.admin_sign_out(%L)$$, test.res('out', 'token')), 'nor signing out twice');
SELECT is(test.audits(), (SELECT n FROM before), '... and neither writes an audit row');

-- ---------------------------------------------------------------- password change
INSERT INTO test.ctx SELECT 'pw', test.admin_user('pgtap-pw', 'support');
INSERT INTO test.res SELECT 'pw', jsonb_build_object('a', test.admin_sign_in('pgtap-pw'), 'b', test.admin_sign_in('pgtap-pw'));
SELECT is(test.error_detail(format($$SELECT api.admin_change_password(%L, 'wrong-old-password', 'new-password-123')$$, test.res('pw', 'a'))),
          '{"field": "password"}'::jsonb, 'a wrong current password is refused next to the field password');
SELECT is(test.error_detail(format($$SELECT api.admin_change_password(%L, 'pw-pgtap-pw', 'short')$$, test.res('pw', 'a'))),
          '{"field": "new_password"}'::jsonb, 'a new password of fewer than 10 characters is refused next to new_password');
SELECT is(test.error_detail(format($$SELECT api.admin_change_password(%L, 'pw-pgtap-pw', 'pw-pgtap-pw')$$, test.res('pw', 'a'))),
          '{"field": "new_password"}'::jsonb, 'the current password again as the new one: refused next to new_password');
SELECT throws_ok(format($$SELECT api.admin_change_password(%L, 'pw-pgtap-pw', 'pw-pgtap-pw')$$, test.res('pw', 'a')), 'FP001',
                 'validation: the new password must differ from the current one', '... saying why');
SELECT lives_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('pw', 'a')), 'a refused change revokes no session');
INSERT INTO ledger.admin_sign_in_failure (user_id) VALUES (test.v('pw')), (test.v('pw'));
SELECT lives_ok(format($$SELECT api.admin_change_password(%L, 'pw-pgtap-pw', 'new-password-123')$$, test.res('pw', 'a')),
                'the password is changed');
SELECT is((SELECT count(*)::integer FROM ledger.admin_sign_in_failure WHERE user_id = test.v('pw')), 0,
          'a password change clears the user''s sign-in failures');
SELECT is(test.last_audit(), 'password.change admin_user:' || test.v('pw') || ' by pgtap-pw', 'the change is audited');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('pw', 'a')), 'FP070', NULL,
                 'the session that changed it is revoked');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('pw', 'b')), 'FP070', NULL,
                 'and so is every other session of the user');
SELECT is(pg_temp.outcome('pgtap-pw'), 'refused', 'the old password no longer signs in');
SELECT is(pg_temp.outcome('pgtap-pw', 'new-password-123'), 'ok', 'the new one does');
SELECT ok((SELECT password_hash ~ '^\$2a\$12\$' FROM ledger.admin_user WHERE id = test.v('pw')), 'hashed with bcrypt cost 12');

-- ---------------------------------------------------------------- users page: create, change, disable
SELECT lives_ok(format($$INSERT INTO test.ctx SELECT 'new', api.admin_user_save(%L, NULL, 'PgTAP-New', 'viewer', false, 'new-user-password')$$,
                       test.admin_token('admin')), 'an admin creates a user');
SELECT results_eq(format($$SELECT username, role, disabled FROM api.admin_users(%L) WHERE id = test.v('new')$$, test.admin_token('admin')),
                  $$VALUES ('pgtap-new'::text, 'viewer'::text, false)$$, 'the users page lists it');
SELECT is(test.last_audit(), 'user.create admin_user:' || test.v('new') || ' by pgtap-admin', 'audited with the admin''s name');
SELECT is(test.error_detail(format($$SELECT api.admin_user_save(%L, NULL, 'pgtap-new2', 'viewer', false, NULL)$$, test.admin_token('admin'))),
          '{"field": "password"}'::jsonb, 'a new user needs a password');
SELECT is(test.error_detail(format($$SELECT api.admin_user_save(%L, NULL, 'pgtap-new', 'viewer', false, 'another-password')$$, test.admin_token('admin'))),
          '{"field": "username"}'::jsonb, 'a taken username is refused next to the field username');
SELECT throws_ok(format($$SELECT api.admin_user_save(%L, -1, 'pgtap-gone', 'viewer', false, NULL)$$, test.admin_token('admin')),
                 'FP010', NULL, 'changing an unknown user: not-found');
INSERT INTO test.res SELECT 'new', jsonb_build_object('token', test.admin_sign_in('pgtap-new', 'new-user-password'));
SELECT lives_ok(format($$SELECT api.admin_user_save(%L, test.v('new'), 'pgtap-new', 'support', false, NULL)$$, test.admin_token('admin')),
                'the admin makes the user support (password kept)');
SELECT results_eq(format($$SELECT role, privileges FROM api.admin_whoami(%L)$$, test.res('new', 'token')),
                  $$VALUES ('support'::text, '{view,support}'::text[])$$, 'the user''s open session has the new role at once');
SELECT results_eq($$SELECT before ->> 'role', after ->> 'role' FROM ledger.admin_audit ORDER BY id DESC LIMIT 1$$,
                  $$VALUES ('viewer'::text, 'support'::text)$$, 'the audit row shows the role before and after');
SELECT lives_ok(format($$SELECT api.admin_user_save(%L, test.v('new'), 'pgtap-new', 'support', true, NULL)$$, test.admin_token('admin')),
                'the admin disables the user');
SELECT throws_ok(format($$SELECT * FROM api.admin_whoami(%L)$$, test.res('new', 'token')), 'FP070', NULL,
                 'disabling revokes the user''s sessions');
SELECT is(pg_temp.outcome('pgtap-new', 'new-user-password'), 'refused', 'a disabled user cannot sign in');
SELECT lives_ok(format($$SELECT api.admin_user_save(%L, test.v('new'), 'pgtap-new', 'support', false, 'reset-password-1')$$,
                       test.admin_token('admin')), 'the admin enables it with a new password');
SELECT is(pg_temp.outcome('pgtap-new', 'reset-password-1'), 'ok', 'the new password signs in');
SELECT is((SELECT count(*)::integer FROM ledger.admin_audit WHERE object = 'admin_user:' || test.v('new') AND action LIKE 'user.%'), 4,
          'one audit row per change of the user (create, role, disable, enable)');
-- The last user who may manage users stays.
UPDATE ledger.admin_user SET disabled = true WHERE role = 'admin' AND id NOT IN (test.v('admin'));
SELECT is(test.error_detail(format($$SELECT api.admin_user_save(%L, test.v('admin'), 'pgtap-admin', 'viewer', false, NULL)$$, test.admin_token('admin'))),
          '{"field": "role"}'::jsonb, 'the last enabled admin cannot drop the privilege users');
SELECT is(test.error_detail(format($$SELECT api.admin_user_save(%L, test.v('admin'), 'pgtap-admin', 'admin', true, NULL)$$, test.admin_token('admin'))),
          '{"field": "disabled"}'::jsonb, '... nor be disabled');
UPDATE ledger.admin_user SET disabled = false WHERE id = test.v('boss');

-- ---------------------------------------------------------------- the audit log
SELECT results_eq(format($$SELECT action, object, username FROM api.admin_audit_log(%L, NULL, 2)$$, test.admin_token('admin')),
                  $$SELECT action, object, username FROM (SELECT a.id, a.action, a.object, u.username FROM ledger.admin_audit a
                      LEFT JOIN ledger.admin_user u ON u.id = a.user_id ORDER BY a.id DESC LIMIT 2) x ORDER BY id DESC$$,
                  'the audit log, newest first, p_limit rows');
SELECT is((SELECT max(id) FROM api.admin_audit_log(test.admin_token('admin'), (SELECT max(id) FROM ledger.admin_audit), 5)),
          (SELECT max(id) FROM ledger.admin_audit WHERE id < (SELECT max(id) FROM ledger.admin_audit)),
          'keyset: the page before an id starts below it');
SELECT throws_ok($$UPDATE ledger.admin_audit SET action = 'x'$$, 'FP050', NULL, 'the audit log is append-only: no UPDATE');
SELECT throws_ok($$DELETE FROM ledger.admin_audit$$, 'FP050', NULL, '... no DELETE');
SELECT throws_ok($$TRUNCATE ledger.admin_audit$$, 'FP050', NULL, '... no TRUNCATE');

-- ---------------------------------------------------------------- hashes: only the owner reads them
SET ROLE festpay_web;
SELECT throws_ok($$SELECT password_hash FROM ledger.admin_user$$, '42501', NULL, 'festpay_web cannot read password hashes');
SELECT throws_ok($$SELECT token_hash FROM ledger.admin_session$$, '42501', NULL, 'festpay_web cannot read session hashes');
RESET ROLE;
SET ROLE festpay_report;
SELECT throws_ok($$SELECT password_hash FROM ledger.admin_user$$, '42501', NULL, 'festpay_report cannot read password hashes');
RESET ROLE;
SELECT is_empty($$SELECT r.rolname, c.relname FROM pg_roles r, pg_class c
                   WHERE c.oid IN ('ledger.admin_user'::regclass, 'ledger.admin_session'::regclass)
                     AND r.rolname <> 'festpay_owner' AND NOT r.rolsuper AND r.rolname !~ '^pg_'
                     AND has_table_privilege(r.oid, c.oid, 'SELECT')$$,
                'no role but the owner may SELECT admin users or sessions (superusers and pg_read_all_data aside)');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace
                   AND (p.proargnames && ARRAY['password_hash', 'token_hash'] OR pg_get_function_result(p.oid) ~ 'hash')$$,
                'no api function answers with a hash');

-- ---------------------------------------------------------------- who may call what: every function, every role
CREATE TEMP TABLE roles (role text PRIMARY KEY, n integer);
INSERT INTO roles VALUES ('admin', 1), ('finance', 2), ('support', 3), ('viewer', 4);
CREATE TEMP TABLE calls (fn text PRIMARY KEY, call text NOT NULL, allowed text[] NOT NULL);
INSERT INTO calls VALUES
    ('api.admin_whoami',          'SELECT * FROM api.admin_whoami(%1$s)', '{admin,finance,support,viewer}'),
    ('api.admin_change_password', $$SELECT api.admin_change_password(%1$s, 'pw-pgtap-%2$s', 'changed-password-1')$$, '{admin,finance,support,viewer}'),
    ('api.admin_roles',           'SELECT * FROM api.admin_roles(%1$s)', '{admin}'),
    ('api.admin_users',           'SELECT * FROM api.admin_users(%1$s)', '{admin}'),
    ('api.admin_user_save',       $$SELECT api.admin_user_save(%1$s, NULL, 'pgtap-by-%2$s', 'viewer', false, 'a-new-password')$$, '{admin}'),
    ('api.admin_audit_log',       'SELECT * FROM api.admin_audit_log(%1$s)', '{admin}');
GRANT SELECT ON roles, calls TO festpay_web;
GRANT SELECT ON test.res TO festpay_web;
SELECT is(test.as_web(c.call, r.role), 'ok', format('%s may call %s', r.role, c.fn))
  FROM calls c JOIN roles r ON r.role = ANY (c.allowed) ORDER BY c.fn, r.n;
CREATE TEMP TABLE footprint AS SELECT pg_temp.footprint() AS f;
SET ROLE festpay_web;
SELECT throws_ok(format(c.call, quote_literal(test.admin_token(r.role)), r.role), 'FP071', NULL,
                 format('%s may not call %s: admin-forbidden', r.role, c.fn))
  FROM calls c JOIN roles r ON NOT r.role = ANY (c.allowed) ORDER BY c.fn, r.n;
SELECT throws_ok(format(c.call, quote_literal('no-such-token'), 'nobody'), 'FP070', NULL,
                 format('without a valid session, %s: admin-unauthenticated', c.fn))
  FROM calls c ORDER BY c.fn;
SELECT throws_ok($$SELECT api.create_admin_user('pgtap-web', 'admin', 'long-enough-password')$$, '42501', NULL,
                 'festpay_web may not call api.create_admin_user (a DBA''s)');
SELECT throws_ok($$SELECT api.ensure_first_admin('long-enough-password')$$, '42501', NULL,
                 'festpay_web may not call api.ensure_first_admin (a DBA''s)');
RESET ROLE;
SELECT is(pg_temp.footprint(), (SELECT f FROM footprint), 'the refused calls changed nothing (users, sessions, failures, audit)');
SET ROLE festpay_terminal;
SELECT throws_ok($$SELECT * FROM api.admin_sign_in('pgtap-admin', 'pw-pgtap-admin')$$, '42501', NULL,
                 'festpay_terminal may not sign in admins');
RESET ROLE;
SET ROLE festpay_web;
SELECT is((SELECT outcome FROM api.admin_sign_in('pgtap-admin', 'pw-pgtap-admin')), 'ok', 'festpay_web signs admins in');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
