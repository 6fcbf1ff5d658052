SET LOCAL ROLE festpay_owner;

-- Online top-up through the payment provider (SPEC 5). A signed-in visitor starts one
-- (api.portal_topup_start: limits checked by api.external_topup_create, state Open, a new checkout reference), the portal
-- moves it to ExternalPending just before it calls the provider (api.portal_topup_pending, which also enqueues the
-- relay's status poll, topic 'provider', one ordering key per checkout), records the provider's checkout id
-- (api.portal_topup_checkout) and redirects the browser to the hosted checkout. The determinate answer, from the
-- provider's webhook (the gateway) or from the relay's poll, goes to api.external_topup_settle, keyed by the reference:
-- it locks the checkout row, so however often and in whatever order it is called, the top-up is booked once.
-- Not here yet: ExternalUnknown after a check window, refunds of paid checkouts that cannot be booked, the admin queue.

CREATE OR REPLACE FUNCTION ledger.portal_checkout(p_token text, p_reference text)
RETURNS ledger.external_checkout LANGUAGE plpgsql AS $$
-- The checkout p_reference of the tag signed in with p_token (ledger.portal_authorize), locked FOR UPDATE.
-- Returns the row; raises portal-unauthenticated, not-found (also for another tag's checkout).
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
    c ledger.external_checkout;
BEGIN
    SELECT x.* INTO c FROM ledger.external_checkout x JOIN ledger.transaction t ON t.id = x.transaction_id
     WHERE x.reference = p_reference AND t.tag_id = g.id
       FOR UPDATE OF x;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', 'no such top-up');
    END IF;
    RETURN c;
END
$$;

CREATE OR REPLACE FUNCTION api.portal_topup_start(p_token text, p_amount bigint)
RETURNS TABLE (reference text, transaction_id bigint, amount bigint, currency text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Starts an online top-up of p_amount cents for the signed-in tag: api.external_topup_create (state Open; the event's
-- limits, maximum balance and a blocked tag are checked there) and a new checkout reference for the provider.
-- Returns the reference, the transaction, the amount and the event's currency; raises portal-unauthenticated,
-- validation, topup-out-of-bounds, max-balance-exceeded, tag-blocked.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    transaction_id := api.external_topup_create(g.event_id, g.uid, p_amount);
    reference := 'ft_' || encode(extensions.gen_random_bytes(16), 'hex');
    INSERT INTO ledger.external_checkout (reference, transaction_id) VALUES (reference, transaction_id);
    amount := p_amount;
    SELECT e.currency INTO currency FROM ledger.event e WHERE e.id = g.event_id;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION api.portal_topup_start IS
    'Starts an online top-up (state Open, limits checked) for the signed-in tag. Returns its checkout reference.';

CREATE OR REPLACE FUNCTION api.portal_topup_pending(p_token text, p_reference text)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Open -> ExternalPending just before the portal calls the provider, and the relay's status poll (outbox topic
-- 'provider', its own ordering key), so a checkout whose webhook never comes is still found.
-- Returns state and outcome (rejected: invalid-transition, logged); raises portal-unauthenticated, not-found.
DECLARE
    c ledger.external_checkout := ledger.portal_checkout(p_token, p_reference);
BEGIN
    RETURN QUERY SELECT * FROM api.external_topup_pending(c.transaction_id);
    INSERT INTO ledger.outbox (topic, ordering_key, transaction_id)
    SELECT 'provider', c.reference, c.transaction_id
     WHERE EXISTS (SELECT FROM ledger.transaction t WHERE t.id = c.transaction_id AND t.state = 'ExternalPending')
    ON CONFLICT ON CONSTRAINT outbox_once DO NOTHING;
    IF FOUND THEN
        PERFORM ledger.enqueue_wakeup('provider');
    END IF;
END
$$;
COMMENT ON FUNCTION api.portal_topup_pending IS
    'Open -> ExternalPending just before calling the provider; enqueues the relay''s status poll. Returns state and outcome.';

CREATE OR REPLACE FUNCTION ledger.enqueue_wakeup(p_topic text)
RETURNS void LANGUAGE plpgsql AS $$
-- Wakes a sleeping relay of p_topic (as ledger.enqueue does) after a row was added to the outbox directly.
-- Returns nothing.
BEGIN
    UPDATE ledger.relay_wakeup SET asleep = false WHERE topic = p_topic AND asleep;
    IF FOUND THEN
        PERFORM pg_notify('festpay_outbox', p_topic);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION api.portal_topup_checkout(p_token text, p_reference text, p_checkout_id text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Records the provider's checkout id of the signed-in tag's checkout p_reference (the same id again is no error).
-- Returns nothing; raises portal-unauthenticated, not-found, validation (another id already recorded).
DECLARE
    c ledger.external_checkout := ledger.portal_checkout(p_token, p_reference);
BEGIN
    IF p_checkout_id IS NULL OR length(p_checkout_id) NOT BETWEEN 1 AND 200 THEN
        PERFORM ledger.fail('validation', 'checkout id must be 1-200 characters', '{"field": "checkout_id"}');
    END IF;
    IF c.checkout_id IS NOT NULL AND c.checkout_id <> p_checkout_id THEN
        PERFORM ledger.fail('validation', 'this top-up already has another checkout', '{"field": "checkout_id"}');
    END IF;
    UPDATE ledger.external_checkout SET checkout_id = p_checkout_id WHERE reference = c.reference;
END
$$;
COMMENT ON FUNCTION api.portal_topup_checkout IS 'Records the provider''s checkout id of a started online top-up.';

CREATE OR REPLACE FUNCTION api.portal_topup_cancel(p_token text, p_reference text)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The provider could not create the checkout: nobody was sent to a payment page, so the top-up is Aborted.
-- Only a checkout without a provider checkout id; otherwise nothing changes (the provider decides).
-- Returns state and outcome; raises portal-unauthenticated, not-found.
DECLARE
    c ledger.external_checkout := ledger.portal_checkout(p_token, p_reference);
BEGIN
    IF c.checkout_id IS NULL THEN
        UPDATE ledger.outbox SET done_at = now() WHERE topic = 'provider' AND outbox.transaction_id = c.transaction_id
                                                   AND done_at IS NULL;
        RETURN QUERY SELECT * FROM ledger.conclude(c.transaction_id, 'Aborted', session_user,
                                                   '{"provider_result": "not-created"}');
    ELSE
        RETURN QUERY SELECT t.id, t.state::text, 'duplicate'::text, NULL::text FROM ledger.transaction t
                      WHERE t.id = c.transaction_id;
    END IF;
END
$$;
COMMENT ON FUNCTION api.portal_topup_cancel IS 'Aborts an online top-up whose checkout the provider did not create.';

CREATE OR REPLACE FUNCTION api.portal_topup_status(p_token text, p_reference text)
RETURNS TABLE (reference text, amount bigint, state text, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The signed-in tag's online top-up p_reference: its amount, state, and what the visitor is told: paid (Committed),
-- declined (Aborted), otherwise pending -- never failed while the provider may still take the money.
-- Returns one row; raises portal-unauthenticated, not-found.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    RETURN QUERY
    SELECT c.reference, t.amount::bigint, t.state::text,
           CASE t.state WHEN 'Committed' THEN 'paid' WHEN 'Aborted' THEN 'declined' ELSE 'pending' END
      FROM ledger.external_checkout c JOIN ledger.transaction t ON t.id = c.transaction_id
     WHERE c.reference = p_reference AND t.tag_id = g.id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', 'no such top-up');
    END IF;
END
$$;
COMMENT ON FUNCTION api.portal_topup_status IS
    'An online top-up of the signed-in tag: amount, state and pending/paid/declined. Returns one row.';

CREATE OR REPLACE FUNCTION api.external_topup_settle(p_reference text, p_result text, p_checkout_id text DEFAULT NULL)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The provider's determinate answer (paid or declined) for checkout p_reference, from its webhook or the relay's poll:
-- ExternalPending -> Committed (booked: customer <- topup online, fee) or Aborted. Locks the checkout row first, so
-- calls racing for one reference run one after the other; the same answer again is a duplicate (nothing booked twice),
-- the opposite one is rejected (invalid-transition, logged). Ends the relay's poll. p_checkout_id, when given, must be
-- the recorded one.
-- Returns state and outcome (booked, duplicate, rejected); raises validation, not-found.
DECLARE
    c ledger.external_checkout;
BEGIN
    IF p_result IS NULL OR p_result NOT IN ('paid', 'declined') THEN
        PERFORM ledger.fail('validation', 'result must be paid or declined', '{"field": "result"}');
    END IF;
    SELECT * INTO c FROM ledger.external_checkout x WHERE x.reference = p_reference FOR UPDATE;
    IF NOT FOUND OR (p_checkout_id IS NOT NULL AND c.checkout_id IS DISTINCT FROM p_checkout_id) THEN
        PERFORM ledger.fail('not-found', format('no checkout with reference %s', left(p_reference, 100)));
    END IF;
    RETURN QUERY SELECT * FROM ledger.conclude(
        c.transaction_id, CASE p_result WHEN 'paid' THEN 'Committed' ELSE 'Aborted' END::ledger.tx_state,
        session_user, jsonb_build_object('provider_result', p_result, 'reference', c.reference));
    UPDATE ledger.external_checkout x SET settled_at = now(), result = p_result
     WHERE x.reference = c.reference AND x.settled_at IS NULL
       AND EXISTS (SELECT FROM ledger.transaction t WHERE t.id = c.transaction_id
                      AND t.state = CASE p_result WHEN 'paid' THEN 'Committed' ELSE 'Aborted' END::ledger.tx_state);
    UPDATE ledger.outbox o SET done_at = now()
     WHERE o.topic = 'provider' AND o.transaction_id = c.transaction_id AND o.done_at IS NULL
       AND EXISTS (SELECT FROM ledger.transaction t WHERE t.id = c.transaction_id AND t.state IN ('Committed', 'Aborted'));
END
$$;
COMMENT ON FUNCTION api.external_topup_settle IS
    'Settles an online top-up by its checkout reference with the provider''s answer (paid, declined), booking it once. '
    'Returns state and outcome.';

CREATE OR REPLACE FUNCTION api.provider_request(p_outbox_id bigint)
RETURNS TABLE (reference text, checkout_id text, state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- What the relay's status poll (topic 'provider') is to check: the checkout's reference, the provider's checkout id
-- (NULL while the portal has not recorded it) and the transaction's state. A request whose top-up is already
-- Committed or Aborted is marked done here (nothing to poll).
-- Returns one row; raises not-found.
BEGIN
    RETURN QUERY
    SELECT c.reference, c.checkout_id, t.state::text
      FROM ledger.outbox o JOIN ledger.external_checkout c ON c.transaction_id = o.transaction_id
      JOIN ledger.transaction t ON t.id = o.transaction_id
     WHERE o.id = p_outbox_id AND o.topic = 'provider';
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('no provider request %s', p_outbox_id));
    END IF;
    UPDATE ledger.outbox o SET done_at = now()
     WHERE o.id = p_outbox_id AND o.done_at IS NULL
       AND EXISTS (SELECT FROM ledger.transaction t WHERE t.id = o.transaction_id AND t.state IN ('Committed', 'Aborted'));
END
$$;
COMMENT ON FUNCTION api.provider_request IS
    'The checkout a provider status poll is to check (reference, checkout id, state); done already when settled.';

CREATE OR REPLACE FUNCTION api.provider_failed(p_outbox_id bigint, p_cause text)
RETURNS timestamptz LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The poll found no determinate answer yet (pending, unknown, provider unavailable): retried later
-- (ledger.outbox_retry). Returns when it is due again (NULL when the request is done).
    SELECT ledger.outbox_retry(p_outbox_id, 'provider', p_cause);
$$;
COMMENT ON FUNCTION api.provider_failed IS
    'Records a provider status poll without a determinate answer (backoff). Returns when it is due again.';
