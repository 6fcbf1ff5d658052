SET LOCAL ROLE festpay_owner;

-- Online top-up through the payment provider (SPEC 5). A signed-in visitor starts one
-- (api.portal_topup_start: limits checked by api.external_topup_create, state Open, a new checkout reference), the portal
-- moves it to ExternalPending just before it calls the provider (api.portal_topup_pending, which also enqueues the
-- relay's provider request, topic 'provider', one ordering key per checkout), records the provider's checkout id
-- (api.portal_topup_checkout) and redirects the browser to the hosted checkout. The determinate answer, from the
-- provider's webhook (the gateway) or from the relay's poll, goes to api.external_topup_settle, keyed by the reference:
-- it locks the checkout row, so however often and in whatever order it is called, the top-up is booked once.
-- A checkout the provider has not decided within the event's provider_check_window becomes ExternalUnknown
-- (api.provider_failed); the relay keeps polling it, so a late answer still settles it, unless an admin decides it
-- first in the resolution queue. An admin may only abort it; the relay then still asks the provider for its final
-- answer (for ledger.provider_answer_limit after the checkout was created), so a payment the provider takes after
-- all is found even when its webhook never reaches us. A payment the provider reports as paid that can no longer be
-- booked (the tag blocked meanwhile, the maximum balance reached, the top-up already Aborted) leaves the top-up
-- Aborted and its checkout "refund due": the admin queue shows it (kind provider-refund), an admin asks for the refund
-- (api.admin_queue_refund), the relay's provider request carries it out (provider.refund, keyed by the reference) and
-- records the result (api.provider_refunded, api.provider_refund_refused).
--
-- One outbox row (topic 'provider') per checkout carries everything the relay asks the provider for it: the status
-- poll while the outcome is open or an admin's abort waits for the provider's final answer, the refund once an admin
-- asked for it (ledger.provider_work says which); it is done when nothing is left to ask.


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
RETURNS TABLE (reference text, amount bigint, state text, status text, refund_reason text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The signed-in tag's online top-up p_reference: its amount, state, and what the visitor is told: paid (Committed),
-- declined (Aborted), refunding (the provider took the money but it could not be booked: a refund is due, requested or
-- failed; refund_reason says why), refunded, otherwise pending (Open, ExternalPending, ExternalUnknown) -- never
-- failed while the provider may still take the money.
-- Returns one row; raises portal-unauthenticated, not-found.
DECLARE
    g ledger.tag := ledger.portal_authorize(p_token);
BEGIN
    RETURN QUERY
    SELECT c.reference, t.amount::bigint, t.state::text,
           CASE WHEN c.refund_state = 'refunded' THEN 'refunded'
                WHEN c.refund_state IS NOT NULL THEN 'refunding'
                WHEN t.state = 'Committed' THEN 'paid'
                WHEN t.state = 'Aborted' THEN 'declined'
                ELSE 'pending' END,
           c.refund_reason
      FROM ledger.external_checkout c JOIN ledger.transaction t ON t.id = c.transaction_id
     WHERE c.reference = p_reference AND t.tag_id = g.id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', 'no such top-up');
    END IF;
END
$$;
COMMENT ON FUNCTION api.portal_topup_status IS
    'An online top-up of the signed-in tag: amount, state and pending/paid/declined/refunding/refunded (with the '
    'reason of a refund). Returns one row.';

CREATE OR REPLACE FUNCTION ledger.provider_answer_limit()
RETURNS interval LANGUAGE sql IMMUTABLE AS $$
-- How long after a checkout was created the relay asks the provider for the final answer to a top-up an admin aborted
-- without one: a provider that has not decided a checkout within it will not.
-- Returns 7 days.
    SELECT interval '7 days';
$$;

CREATE OR REPLACE FUNCTION ledger.provider_work(c ledger.external_checkout, p_state ledger.tx_state)
RETURNS text LANGUAGE sql STABLE AS $$
-- What the relay is to ask the provider for checkout c whose top-up is p_state: refund (an admin asked for it), poll
-- (the outcome is open: Open, ExternalPending, ExternalUnknown; or Aborted without the provider's final answer --
-- an admin's abort, c.result NULL -- while its checkout id is known and ledger.provider_answer_limit has not passed
-- since c.created_at, so a payment the provider takes after all is found and refunded), or nothing.
-- Returns 'refund', 'poll' or NULL.
    SELECT CASE WHEN c.refund_state = 'requested' THEN 'refund'
                WHEN p_state IN ('Open', 'ExternalPending', 'ExternalUnknown') THEN 'poll'
                WHEN p_state = 'Aborted' AND c.result IS NULL AND c.checkout_id IS NOT NULL
                 AND now() < c.created_at + ledger.provider_answer_limit() THEN 'poll' END;
$$;

CREATE OR REPLACE FUNCTION ledger.provider_request_end(p_tx_id bigint)
RETURNS void LANGUAGE sql AS $$
-- Marks the relay's provider request of the checkout of transaction p_tx_id done when nothing is left to ask the
-- provider (ledger.provider_work): its final answer is in (or will not come) and no refund waits to be carried out.
-- Returns nothing.
    UPDATE ledger.outbox o SET done_at = now()
      FROM ledger.external_checkout c JOIN ledger.transaction t ON t.id = c.transaction_id
     WHERE c.transaction_id = p_tx_id AND o.topic = 'provider' AND o.transaction_id = p_tx_id AND o.done_at IS NULL
       AND ledger.provider_work(c, t.state) IS NULL;
$$;

CREATE OR REPLACE FUNCTION ledger.unbookable(t ledger.transaction)
RETURNS text LANGUAGE sql STABLE AS $$
-- Why an online top-up the provider reports as paid can no longer be booked now: its tag was blocked meanwhile, or
-- its customer's balance would exceed the event's maximum (the top-up's own limits were checked when it started).
-- The caller holds the customer's lock. Returns 'tag-blocked', 'max-balance-exceeded' or NULL (bookable).
    SELECT CASE WHEN g.status = 'blocked' THEN 'tag-blocked'
                WHEN a.balance + t.amount - t.fee > e.max_balance THEN 'max-balance-exceeded' END
      FROM ledger.account a
      JOIN ledger.event e ON e.id = t.event_id
      LEFT JOIN ledger.tag g ON g.id = t.tag_id
     WHERE a.id = t.account_id;
$$;

CREATE OR REPLACE FUNCTION api.external_topup_settle(p_reference text, p_result text, p_checkout_id text DEFAULT NULL)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The provider's determinate answer (paid or declined) for checkout p_reference, from its webhook or the relay's poll:
-- ExternalPending or ExternalUnknown -> Committed (booked: customer <- topup online, fee) or Aborted. Locks the
-- checkout row first, so calls racing for one reference run one after the other, then the customer (the state is read
-- under both locks); the same answer again is a duplicate (nothing booked twice), declined after paid is rejected
-- (invalid-transition, logged). Declined for a top-up an admin aborted is the provider's final answer it was polled
-- for: recorded on the checkout (result, settled_at), a duplicate, nothing else changes. Paid when the top-up can no
-- longer be booked (ledger.unbookable: tag blocked, maximum balance) or is Aborted already (declined earlier, an
-- admin's decision) books nothing: the top-up is (or stays) Aborted and the checkout's refund is due, once, with the
-- reason (refund_reason; the admin queue and the visitor's page show it). Ends the relay's poll when nothing is left
-- to ask the provider (ledger.provider_work). p_checkout_id, when given, must be the recorded one.
-- Returns state and outcome (booked, duplicate, rejected, refund-due; problem: tag-blocked or max-balance-exceeded for
-- a refund due because of them); raises validation, not-found.
DECLARE
    c ledger.external_checkout;
    tx ledger.transaction;
    v_reason text;
BEGIN
    IF p_result IS NULL OR p_result NOT IN ('paid', 'declined') THEN
        PERFORM ledger.fail('validation', 'result must be paid or declined', '{"field": "result"}');
    END IF;
    SELECT * INTO c FROM ledger.external_checkout x WHERE x.reference = p_reference FOR UPDATE;
    IF NOT FOUND OR (p_checkout_id IS NOT NULL AND c.checkout_id IS DISTINCT FROM p_checkout_id) THEN
        PERFORM ledger.fail('not-found', format('no checkout with reference %s', left(p_reference, 100)));
    END IF;
    PERFORM ledger.lock_account(x.account_id) FROM ledger.transaction x WHERE x.id = c.transaction_id;
    SELECT * INTO tx FROM ledger.transaction x WHERE x.id = c.transaction_id;
    IF p_result = 'paid' AND tx.state IN ('ExternalPending', 'ExternalUnknown') THEN
        v_reason := ledger.unbookable(tx);
    ELSIF p_result = 'paid' AND tx.state = 'Aborted' THEN
        v_reason := 'aborted';
    END IF;
    IF v_reason IS NOT NULL THEN
        -- The provider has the money, the ledger cannot take it: nothing is booked, the refund is due (once).
        IF tx.state <> 'Aborted' THEN
            PERFORM ledger.conclude(tx.id, 'Aborted', session_user,
                                    jsonb_build_object('provider_result', p_result, 'unbookable', v_reason,
                                                       'reference', c.reference));
        END IF;
        UPDATE ledger.external_checkout x
           SET refund_state = 'due', refund_reason = v_reason, refund_due_at = now(),
               result = coalesce(x.result, p_result), settled_at = coalesce(x.settled_at, now())
         WHERE x.reference = c.reference AND x.refund_state IS NULL;
        outcome := CASE WHEN FOUND THEN 'refund-due' ELSE 'duplicate' END;
        PERFORM ledger.provider_request_end(tx.id);
        RETURN QUERY SELECT tx.id, 'Aborted'::text, outcome,
                            CASE WHEN v_reason <> 'aborted' THEN v_reason END;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM ledger.conclude(
        c.transaction_id, CASE p_result WHEN 'paid' THEN 'Committed' ELSE 'Aborted' END::ledger.tx_state,
        session_user, jsonb_build_object('provider_result', p_result, 'reference', c.reference));
    UPDATE ledger.external_checkout x SET settled_at = now(), result = p_result
     WHERE x.reference = c.reference AND x.settled_at IS NULL
       AND EXISTS (SELECT FROM ledger.transaction t WHERE t.id = c.transaction_id
                      AND t.state = CASE p_result WHEN 'paid' THEN 'Committed' ELSE 'Aborted' END::ledger.tx_state);
    PERFORM ledger.provider_request_end(c.transaction_id);
END
$$;
COMMENT ON FUNCTION api.external_topup_settle IS
    'Settles an online top-up by its checkout reference with the provider''s answer (paid, declined), booking it once; '
    'paid but no longer bookable: Aborted, refund due. Returns state and outcome.';

CREATE OR REPLACE FUNCTION api.provider_request(p_outbox_id bigint)
RETURNS TABLE (reference text, checkout_id text, state text, action text, amount bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- What the relay's provider request (topic 'provider') is to do now (ledger.provider_work): poll the checkout's status
-- (action poll: the outcome is open, or an admin's abort waits for the provider's final answer), refund its amount
-- (action refund: an admin asked for it; the provider's refund is keyed by the reference), or nothing (action NULL:
-- the request is marked done here). Also the checkout's reference, the provider's checkout id (NULL while the portal
-- has not recorded it) and the transaction's state.
-- Returns one row; raises not-found.
BEGIN
    RETURN QUERY
    SELECT c.reference, c.checkout_id, t.state::text, ledger.provider_work(c, t.state), t.amount::bigint
      FROM ledger.outbox o JOIN ledger.external_checkout c ON c.transaction_id = o.transaction_id
      JOIN ledger.transaction t ON t.id = o.transaction_id
     WHERE o.id = p_outbox_id AND o.topic = 'provider';
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('no provider request %s', p_outbox_id));
    END IF;
    PERFORM ledger.provider_request_end(o.transaction_id) FROM ledger.outbox o WHERE o.id = p_outbox_id;
END
$$;
COMMENT ON FUNCTION api.provider_request IS
    'What a provider request is to do: poll the checkout, refund it, or nothing (then it is done). Returns the '
    'reference, checkout id, state, action and amount.';

CREATE OR REPLACE FUNCTION api.provider_failed(p_outbox_id bigint, p_cause text)
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The provider request got no determinate answer (the checkout pending or unknown, no checkout id yet, a refund not
-- finished, the provider unreachable): retried later (ledger.outbox_retry: 1, 2, 4 ... 60 s, then every 60 s). A
-- checkout still ExternalPending once it is older than its event's provider_check_window becomes ExternalUnknown
-- (ledger.conclude, logged with the cause) and is polled on, so a late answer still settles it; the resolution queue
-- shows it meanwhile. A request with nothing left to ask (ledger.provider_work: an admin's abort past
-- ledger.provider_answer_limit) is done instead. Locks the checkout row first (as api.external_topup_settle), so an
-- answer arriving at the same moment is never overtaken. Returns when the request is due again (NULL when it is
-- unknown or done).
DECLARE
    c ledger.external_checkout;
    tx ledger.transaction;
    v_window interval;
BEGIN
    SELECT x.* INTO c FROM ledger.outbox o JOIN ledger.external_checkout x ON x.transaction_id = o.transaction_id
     WHERE o.id = p_outbox_id AND o.topic = 'provider' AND o.done_at IS NULL
       FOR UPDATE OF x;
    IF FOUND THEN
        PERFORM ledger.lock_account(x.account_id) FROM ledger.transaction x WHERE x.id = c.transaction_id;
        SELECT * INTO tx FROM ledger.transaction x WHERE x.id = c.transaction_id;
        SELECT e.provider_check_window INTO v_window FROM ledger.event e WHERE e.id = tx.event_id;
        IF tx.state = 'ExternalPending' AND c.created_at + v_window <= now() THEN
            PERFORM ledger.conclude(tx.id, 'ExternalUnknown', session_user,
                                    jsonb_build_object('provider_result', 'unknown', 'reference', c.reference,
                                                       'check_window_s', extract(epoch FROM v_window)::bigint,
                                                       'cause', left(p_cause, 200)));
        END IF;
        PERFORM ledger.provider_request_end(tx.id);
    END IF;
    RETURN ledger.outbox_retry(p_outbox_id, 'provider', p_cause);
END
$$;
COMMENT ON FUNCTION api.provider_failed IS
    'Records a provider request without a determinate answer (backoff); past the check window a pending checkout '
    'becomes ExternalUnknown. Returns when it is due again.';

CREATE OR REPLACE FUNCTION ledger.provider_refund_of(p_outbox_id bigint)
RETURNS ledger.external_checkout LANGUAGE plpgsql AS $$
-- The checkout of the relay's provider request p_outbox_id, locked FOR UPDATE.
-- Returns the row; raises not-found for an unknown request.
DECLARE
    c ledger.external_checkout;
BEGIN
    SELECT x.* INTO c FROM ledger.outbox o JOIN ledger.external_checkout x ON x.transaction_id = o.transaction_id
     WHERE o.id = p_outbox_id AND o.topic = 'provider'
       FOR UPDATE OF x;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('no provider request %s', p_outbox_id));
    END IF;
    RETURN c;
END
$$;

CREATE OR REPLACE FUNCTION api.provider_refunded(p_outbox_id bigint, p_refund_id text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The provider refunded the checkout of request p_outbox_id (its refund id p_refund_id): the refund is recorded
-- (refunded, the id, when) and the request is done. Recording it again is no error and changes nothing.
-- Returns the checkout's refund state ('refunded'); raises not-found (no refund requested), validation (refund id).
DECLARE
    c ledger.external_checkout := ledger.provider_refund_of(p_outbox_id);
BEGIN
    IF p_refund_id IS NULL OR length(p_refund_id) NOT BETWEEN 1 AND 200 THEN
        PERFORM ledger.fail('validation', 'a refund id has 1 to 200 characters', '{"field": "refund_id"}');
    END IF;
    IF c.refund_state = 'requested' THEN
        UPDATE ledger.external_checkout x
           SET refund_state = 'refunded', refund_id = p_refund_id, refunded_at = now(), refund_error = NULL
         WHERE x.reference = c.reference;
    ELSIF c.refund_state IS DISTINCT FROM 'refunded' THEN
        PERFORM ledger.fail('not-found', format('no refund of checkout %s was requested', c.reference));
    END IF;
    PERFORM ledger.provider_request_end(c.transaction_id);
    RETURN 'refunded';
END
$$;
COMMENT ON FUNCTION api.provider_refunded IS
    'Records that the provider refunded a checkout (its refund id); the request is done. Returns the refund state.';

CREATE OR REPLACE FUNCTION api.provider_refund_refused(p_outbox_id bigint, p_cause text)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- The provider refused the refund of the checkout of request p_outbox_id (retrying the same will not help): the
-- refund is failed, with the cause, and back in the admin queue for a decision; the request is done.
-- Returns the checkout's refund state ('failed', or 'refunded' when it was refunded already); raises not-found (no
-- refund requested).
DECLARE
    c ledger.external_checkout := ledger.provider_refund_of(p_outbox_id);
BEGIN
    IF c.refund_state = 'requested' THEN
        UPDATE ledger.external_checkout x
           SET refund_state = 'failed', refund_error = left(coalesce(p_cause, 'refused'), 1000)
         WHERE x.reference = c.reference;
        c.refund_state := 'failed';
    ELSIF c.refund_state IS NULL OR c.refund_state = 'due' THEN
        PERFORM ledger.fail('not-found', format('no refund of checkout %s was requested', c.reference));
    END IF;
    PERFORM ledger.provider_request_end(c.transaction_id);
    RETURN c.refund_state;
END
$$;
COMMENT ON FUNCTION api.provider_refund_refused IS
    'Records that the provider refused a checkout''s refund: failed, back in the admin queue. Returns the refund '
    'state.';
