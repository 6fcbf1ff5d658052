SET LOCAL ROLE festpay_owner;

-- Who may call what: the one list of the callable surface. Every api function has a row naming the audiences whose
-- login role may execute it; an empty list means a DBA only (festpay_owner, a superuser). Applied on every migrate:
-- each role gets exactly its rows, PUBLIC gets nothing, and no ledger function is callable from outside.
--   terminal  festpay_terminal: the terminal API (SPEC 7), every call naming the assignment the gateway authenticated
--   relay     festpay_relay: the outbox relay (TSE signing, reservation expiry, payment-provider answers)
--   web       festpay_web: the admin site and the customer portal, each function checking a session
--   report    festpay_report: read-only reports

CREATE OR REPLACE FUNCTION ledger.api_grants()
RETURNS TABLE (function_name text, audiences text[]) LANGUAGE sql IMMUTABLE AS $$
-- The grant list of schema api, one row per function name (all overloads of a name alike).
-- Returns (function name, audiences); tests/test_roles.sql fails for an api function without a row.
    SELECT * FROM (VALUES
        -- terminals
        ('register_terminal',        '{terminal}'::text[]),
        ('terminal_secret',          '{terminal}'),
        ('terminal_config',          '{terminal}'),
        ('tag_sync',                 '{terminal}'),
        ('reserve',                  '{terminal}'),
        ('replicate',                '{terminal}'),
        ('topup',                    '{terminal}'),
        ('refund',                   '{terminal}'),
        ('deposit_return',           '{terminal}'),
        ('open_loop_purchase',       '{terminal}'),
        ('terminal_transaction',     '{terminal}'),
        ('terminal_receipt',         '{terminal}'),
        ('idempotency_claim',        '{terminal}'),
        ('idempotency_complete',     '{terminal}'),
        ('idempotency_release',      '{terminal}'),
        -- the relay
        ('relay_sleep',              '{relay}'),
        ('outbox_prepare',           '{relay}'),
        ('outbox_claim',             '{relay}'),
        ('tse_request',              '{relay}'),
        ('tse_started',              '{relay}'),
        ('tse_store',                '{relay}'),
        ('tse_failed',               '{relay}'),
        ('expire_reservations',      '{relay}'),
        ('idempotency_purge',        '{relay}'),
        ('external_topup_result',    '{relay}'),
        ('external_topup_settle',    '{relay,web}'),
        ('provider_request',         '{relay}'),
        ('provider_failed',          '{relay}'),
        ('provider_refunded',        '{relay}'),
        ('provider_refund_refused',  '{relay}'),
        -- readiness and problem types: every service answers /health/ready and maps named errors
        ('schema_version',           '{terminal,relay,web}'),
        ('outbox_lag',               '{terminal,relay,web}'),
        ('problem_types',            '{terminal,relay,web,report}'),
        -- reports
        ('check_invariants',         '{report}'),
        ('customer_statement',       '{report}'),
        -- a DBA's (and, once they check a session, the admin site's and the portal's)
        ('create_event',             '{}'),
        ('create_merchant',          '{}'),
        ('create_position',          '{}'),
        ('create_product',           '{}'),
        ('create_registration_code', '{}'),
        ('create_tag',               '{}'),
        ('set_tag_blocked',          '{}'),
        ('block_tag',                '{}'),
        ('unblock_tag',              '{}'),
        ('set_seller',               '{}'),
        ('chargeback',               '{}'),
        ('transfer',                 '{}'),
        ('payout',                   '{}'),
        ('external_topup_create',    '{}'),
        ('external_topup_pending',   '{}'),
        ('resolve_transaction',      '{}'),
        ('receipt',                  '{}'),
        ('close_cashpoint',          '{}'),
        ('open_cashpoints',          '{}'),
        ('dsfinvk_lines',            '{}'),
        ('dsfinvk_receipts',         '{}'),
        ('dsfinvk_event',            '{}'),
        ('dsfinvk_closings',         '{}'),
        ('events',                   '{}'),
        ('tse_signatures',           '{}'),
        ('tse_unsigned',             '{}'),
        -- fiscal (admin site, finance)
        ('admin_dsfinvk_event',      '{web}'),
        ('admin_dsfinvk_closings',   '{web}'),
        ('admin_dsfinvk_lines',      '{web}'),
        ('admin_dsfinvk_receipts',   '{web}'),
        -- admin site: sign-in, users, audit (SQL-AUTH); each checks the session token it takes first
        ('portal_topup_start',       '{web}'),
        ('portal_topup_pending',     '{web}'),
        ('portal_topup_checkout',    '{web}'),
        ('portal_topup_cancel',      '{web}'),
        ('portal_topup_status',      '{web}'),
        ('admin_sign_in',            '{web}'),
        ('admin_sign_out',           '{web}'),
        ('admin_whoami',             '{web}'),
        ('admin_change_password',    '{web}'),
        ('admin_roles',              '{web}'),
        ('admin_users',              '{web}'),
        ('admin_user_save',          '{web}'),
        ('admin_audit_log',          '{web}'),
        ('create_admin_user',        '{}'),
        ('ensure_first_admin',       '{}'),
        -- admin site: setup pages (SQL-AUTH)
        ('admin_event',              '{web}'),
        ('admin_event_update',       '{web}'),
        ('admin_merchants',          '{web}'),
        ('admin_merchant_save',      '{web}'),
        ('admin_positions',          '{web}'),
        ('admin_position_save',      '{web}'),
        ('admin_products',           '{web}'),
        ('admin_product_save',       '{web}'),
        ('admin_terminals',          '{web}'),
        ('admin_registration_code',  '{web}'),
        ('admin_terminal_revoke',    '{web}'),
        ('admin_tags',               '{web}'),
        ('admin_tags_import',        '{web}'),
        -- admin site: operations pages (SQL-OPS); each checks the session token it takes first
        ('admin_customers',          '{web}'),
        ('admin_customer',           '{web}'),
        ('admin_customer_block',     '{web}'),
        ('admin_customer_move',      '{web}'),
        ('admin_chargeback',         '{web}'),
        ('admin_transactions',       '{web}'),
        ('admin_transaction',        '{web}'),
        ('admin_receipt',            '{web}'),
        ('admin_queue',              '{web}'),
        ('admin_queue_resolve',      '{web}'),
        ('admin_queue_refund',       '{web}'),
        ('admin_report',             '{web}'),
        ('admin_fiscal',             '{web}'),
        ('admin_close_cashpoint',    '{web}'),
        ('admin_dashboard',          '{web}'),
        -- customer portal: sign-in and read pages; each checks the portal session token it takes first
        ('portal_sign_in',           '{web}'),
        ('portal_sign_out',          '{web}'),
        ('portal_whoami',            '{web}'),
        ('portal_balance',           '{web}'),
        ('portal_topup_limits',      '{web}'),
        ('portal_history',           '{web}'),
        ('portal_receipt',           '{web}'),
        ('portal_block',             '{web}'),
        ('portal_data',              '{web}'),
        -- payouts
        ('portal_payout',            '{web}'),
        ('portal_payout_set',        '{web}'),
        ('admin_payouts',            '{web}'),
        ('admin_payout_run_create',  '{web}'),
        ('admin_payout_run',         '{web}'),
        ('admin_payout_export',      '{web}'),
        ('admin_payout_run_revoke',  '{web}'),
        ('admin_payout_run_done',    '{web}'),
        ('admin_payout_block',       '{web}'),
        ('admin_donate_remaining',   '{web}'),
        ('erase_personal_data',      '{web}')
    ) AS g(function_name, audiences);
$$;

DO $$
DECLARE
    f record;
    r text;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig, p.pronamespace = 'api'::regnamespace AS is_api, g.audiences
               FROM pg_proc p LEFT JOIN ledger.api_grants() g ON g.function_name = p.proname
              WHERE p.pronamespace IN ('api'::regnamespace, 'ledger'::regnamespace) LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, festpay_terminal, festpay_relay, festpay_web, festpay_report',
                       f.sig);
        IF f.is_api THEN
            FOREACH r IN ARRAY coalesce(f.audiences, '{}') LOOP
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f.sig, 'festpay_' || r);
            END LOOP;
        END IF;
    END LOOP;
END
$$;

-- report.open_reservation filters by the one list of states that hold money (ledger.holds): its readers call it.
GRANT EXECUTE ON FUNCTION ledger.holds(ledger.tx_state) TO festpay_report;
