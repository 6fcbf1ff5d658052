-- One login role per audience (schema/00_foundation.sql): festpay_terminal, festpay_relay, festpay_web and
-- festpay_report; festpay_gateway, which could execute every api function, goes. The grants of api functions are
-- made from one list on every migrate (procedures/99_grants.sql). Reports get event names from report.event.
-- depends: 0008_row_rules

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['festpay_terminal', 'festpay_relay', 'festpay_web', 'festpay_report'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END
$$;
COMMENT ON ROLE festpay_terminal IS 'The terminal API of the gateway: may execute the terminal calls of the api, nothing else.';
COMMENT ON ROLE festpay_relay IS 'The outbox relay: may execute the outbox, TSE and payment-provider calls of the api.';
COMMENT ON ROLE festpay_web IS 'The admin site and the customer portal: may execute their session-checked api functions.';
COMMENT ON ROLE festpay_report IS 'Read-only reporting: report views and the read-only api functions.';

GRANT USAGE ON SCHEMA api TO festpay_terminal, festpay_relay, festpay_web, festpay_report;

-- festpay_gateway loses everything it had in this database; the role itself goes once no other database of the
-- cluster still grants it something (roles are per cluster).
DO $$
DECLARE
    f regprocedure;
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'festpay_gateway') THEN
        FOR f IN SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'api'::regnamespace LOOP
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM festpay_gateway', f);
        END LOOP;
        REVOKE ALL ON SCHEMA api FROM festpay_gateway;
        BEGIN
            DROP ROLE festpay_gateway;
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role festpay_gateway is still granted something in another database; kept';
        END;
    END IF;
END
$$;

SET ROLE festpay_owner;

CREATE VIEW report.event AS
SELECT e.id AS event_id, e.name, e.currency, e.time_zone, e.created_at
  FROM ledger.event e;
COMMENT ON VIEW report.event IS 'Every event by id and name, for reports that show names (no keys, limits or fees).';
GRANT SELECT ON report.event TO festpay_report;

RESET ROLE;
