SET LOCAL ROLE festpay_owner;

-- What the HTTP gateway needs besides the bookings: Idempotency-Key bookkeeping (IETF httpapi draft semantics).
-- A claim is committed on its own before the request runs, so a concurrent repeat sees it running.

CREATE OR REPLACE FUNCTION api.idempotency_claim(p_scope text, p_key text, p_request_hash text,
                                                 p_ttl_s integer DEFAULT 86400, p_stale_s integer DEFAULT 60)
RETURNS TABLE (outcome text, status integer, response jsonb)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Claims an Idempotency-Key of a caller for a request (hash of method, path and body).
-- Returns outcome new (go ahead), replay (with the stored status and answer), mismatch (the key was used for another
-- request: 422) or running (the first request is still under way: 409). An expired key, or a claim left running
-- for p_stale_s seconds by a gateway that died, is claimed afresh. Raises validation for a bad key or hash.
DECLARE
    k ledger.idempotency_key;
BEGIN
    IF p_key IS NULL OR length(p_key) NOT BETWEEN 1 AND 255 OR p_key ~ '[^\x21-\x7e]' THEN
        PERFORM ledger.fail('validation', 'Idempotency-Key must be 1 to 255 visible ASCII characters', '{"field": "Idempotency-Key"}');
    END IF;
    IF p_request_hash IS NULL OR p_request_hash !~ '^[0-9a-f]{64}$' THEN
        PERFORM ledger.fail('validation', 'request_hash must be a hex SHA-256', '{"field": "request_hash"}');
    END IF;
    INSERT INTO ledger.idempotency_key (scope, key, request_hash, state, expires_at)
    VALUES (p_scope, p_key, p_request_hash, 'running', now() + make_interval(secs => p_ttl_s))
    ON CONFLICT (scope, key) DO NOTHING;
    IF FOUND THEN
        RETURN QUERY SELECT 'new'::text, NULL::integer, NULL::jsonb;
        RETURN;
    END IF;
    SELECT * INTO k FROM ledger.idempotency_key x WHERE x.scope = p_scope AND x.key = p_key FOR UPDATE;
    IF k.expires_at <= now() OR (k.state = 'running' AND k.created_at <= now() - make_interval(secs => p_stale_s)) THEN
        UPDATE ledger.idempotency_key x
           SET request_hash = p_request_hash, state = 'running', status = NULL, response = NULL,
               created_at = now(), expires_at = now() + make_interval(secs => p_ttl_s)
         WHERE x.scope = p_scope AND x.key = p_key;
        RETURN QUERY SELECT 'new'::text, NULL::integer, NULL::jsonb;
    ELSIF k.request_hash <> p_request_hash THEN
        RETURN QUERY SELECT 'mismatch'::text, NULL::integer, NULL::jsonb;
    ELSIF k.state = 'running' THEN
        RETURN QUERY SELECT 'running'::text, NULL::integer, NULL::jsonb;
    ELSE
        RETURN QUERY SELECT 'replay'::text, k.status, k.response;
    END IF;
END
$$;
COMMENT ON FUNCTION api.idempotency_claim IS
    'Claims an Idempotency-Key for a request. Returns outcome new, replay (with status and answer), mismatch or running.';

CREATE OR REPLACE FUNCTION api.idempotency_complete(p_scope text, p_key text, p_status integer, p_response jsonb)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Stores the answer of a claimed request; call it in the same transaction as the request's own work.
-- Returns nothing.
    UPDATE ledger.idempotency_key SET state = 'done', status = p_status, response = p_response
     WHERE scope = p_scope AND key = p_key AND state = 'running';
$$;
COMMENT ON FUNCTION api.idempotency_complete IS 'Stores the answer of a claimed request, with the request''s own transaction.';

CREATE OR REPLACE FUNCTION api.idempotency_release(p_scope text, p_key text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Forgets a running claim whose request failed and changed nothing, so that a retry runs it again.
-- Returns nothing.
    DELETE FROM ledger.idempotency_key WHERE scope = p_scope AND key = p_key AND state = 'running';
$$;
COMMENT ON FUNCTION api.idempotency_release IS 'Forgets a running claim whose request failed (and changed nothing).';

CREATE OR REPLACE FUNCTION api.idempotency_purge()
RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Deletes expired Idempotency-Keys (default lifetime 24 hours).
-- Returns how many.
    WITH gone AS (DELETE FROM ledger.idempotency_key WHERE expires_at <= now() RETURNING 1)
    SELECT count(*)::integer FROM gone;
$$;
COMMENT ON FUNCTION api.idempotency_purge IS 'Deletes expired Idempotency-Keys. Returns how many.';

CREATE OR REPLACE FUNCTION api.schema_version()
RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The newest applied migration, for /health/ready to compare with the migrations the gateway ships.
-- Returns its id, or NULL when the database was not built by yoyo (no bookkeeping table).
DECLARE
    v text;
BEGIN
    IF to_regclass('public._yoyo_migration') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT max(migration_id) FROM public._yoyo_migration' INTO v;
    RETURN v;
END
$$;
COMMENT ON FUNCTION api.schema_version IS 'The newest applied migration id (yoyo), for readiness checks.';
