SET LOCAL ROLE festpay_owner;

-- Bookings made online: top-up, refund, deposit return, open-loop purchase, chargeback, transfer, payout,
-- external (online) top-ups, admin resolution, reserve expiry, and the terminal transaction lookup.

CREATE OR REPLACE FUNCTION ledger.refuse_blocked(p_tag ledger.tag)
RETURNS void LANGUAGE plpgsql AS $$
-- Checks that a tag is not blocked (lost or stolen) before money moves to or from it.
-- Raises tag-blocked.
BEGIN
    IF p_tag.status = 'blocked' THEN
        PERFORM ledger.fail('tag-blocked', format('tag %s is blocked', p_tag.uid), jsonb_build_object('uid', p_tag.uid));
    END IF;
END
$$;

-- ledger.check_topup takes the tag: the form without it is dropped where it exists.
DROP FUNCTION IF EXISTS ledger.check_topup(bigint, ledger.account, bigint, bigint, boolean);

CREATE OR REPLACE FUNCTION ledger.check_topup(p_event_id bigint, p_tag_id bigint, p_account ledger.account,
                                              p_amount bigint, p_fee bigint, p_bounds boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql STABLE AS $$
-- Checks money coming onto a tag (a top-up; the caller holds the customer's lock): the tag is in no open payout run
-- (its transfer is fixed and the tag is closed when the run is done, so money added now would be left on it; one
-- probe of the index payout_line_one_run_per_tag), and the event's limits: minimum and maximum top-up, maximum
-- balance after the fee. p_amount of 0 or less adds nothing and is not checked against the run.
-- Raises payout-locked, topup-out-of-bounds or max-balance-exceeded.
DECLARE
    e ledger.event;
    v_run bigint;
BEGIN
    IF p_amount > 0 THEN
        SELECT l.run_id INTO v_run FROM ledger.payout_line l JOIN ledger.payout_run r ON r.id = l.run_id
         WHERE l.tag_id = p_tag_id AND NOT l.revoked AND r.state = 'open';
        IF v_run IS NOT NULL THEN
            PERFORM ledger.fail('payout-locked',
                                format('the balance of this tag is being paid out (payout run %s): no top-up until the '
                                       'run is done or revoked', v_run),
                                jsonb_build_object('run_id', v_run));
        END IF;
    END IF;
    SELECT * INTO e FROM ledger.event WHERE id = p_event_id;
    IF p_bounds AND (p_amount < e.min_topup OR p_amount > e.max_topup) THEN
        PERFORM ledger.fail('topup-out-of-bounds', format('a top-up must be between %s and %s', e.min_topup, e.max_topup),
                            jsonb_build_object('min_topup', e.min_topup, 'max_topup', e.max_topup));
    END IF;
    IF p_account.balance + p_amount - p_fee > e.max_balance THEN
        PERFORM ledger.fail('max-balance-exceeded', format('the balance would be %s, the maximum is %s',
                            p_account.balance + p_amount - p_fee, e.max_balance),
                            jsonb_build_object('max_balance', e.max_balance, 'balance', p_account.balance));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ledger.topup_fee(p_event_id bigint, p_method ledger.payment_method)
RETURNS bigint LANGUAGE sql STABLE AS $$
-- The event's fee for a top-up by this method.
-- Returns cents.
    SELECT CASE p_method WHEN 'cash' THEN topup_fee_cash WHEN 'card' THEN topup_fee_card ELSE topup_fee_online END
      FROM ledger.event WHERE id = p_event_id;
$$;

CREATE OR REPLACE FUNCTION ledger.balance_answer(p_tx_id bigint,
    OUT transaction_id bigint, OUT state text, OUT balance bigint)
LANGUAGE sql STABLE AS $$
-- The answer to an online booking: the transaction, its state and the customer's balance now.
-- Returns one row.
    SELECT t.id, t.state::text, a.balance FROM ledger.transaction t JOIN ledger.account a ON a.id = t.account_id
     WHERE t.id = p_tx_id;
$$;

CREATE OR REPLACE FUNCTION api.topup(p_assignment_id bigint, p_terminal_tx_number bigint, p_uid text,
                                     p_amount bigint, p_payment text,
                                     OUT transaction_id bigint, OUT state text, OUT balance bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Tops up a tag at a top-up terminal, cash (into the terminal's drawer) or card, less the method's fee.
-- Returns transaction, state Committed and the new balance; a repeat returns the first booking. Raises
-- topup-out-of-bounds, max-balance-exceeded, tag-blocked, payout-locked (the tag is in an open payout run),
-- wrong-position, validation.
DECLARE
    ctx record := ledger.terminal_context(p_assignment_id, 'topup');
    v_tag ledger.tag := ledger.find_tag(ctx.event_id, p_uid, true);
    v_account ledger.account := ledger.lock_account(v_tag.account_id);
    t ledger.transaction := ledger.terminal_tx(p_assignment_id, ledger.positive(p_terminal_tx_number, 'terminal_tx_number'));
    v_method ledger.payment_method;
    v_fee bigint;
    v_id bigint;
BEGIN
    IF p_payment IS NULL OR p_payment NOT IN ('cash', 'card') THEN
        PERFORM ledger.fail('validation', 'payment must be cash or card', '{"field": "payment"}');
    END IF;
    IF t.id IS NOT NULL THEN
        PERFORM ledger.same_request(t, 'topup', v_tag.account_id, p_amount, p_payment);
        SELECT * INTO transaction_id, state, balance FROM ledger.balance_answer(t.id);
        RETURN;
    END IF;
    v_method := p_payment::ledger.payment_method;
    PERFORM ledger.positive(p_amount, 'amount');
    PERFORM ledger.refuse_blocked(v_tag);
    v_fee := ledger.topup_fee(ctx.event_id, v_method);
    PERFORM ledger.check_topup(ctx.event_id, v_tag.id, v_account, p_amount, v_fee);
    v_id := ledger.new_transaction(
        ctx.event_id, 'topup', 'Committed', v_tag.account_id,
        CASE v_method WHEN 'cash' THEN ctx.cash_account_id ELSE ledger.system_account(ctx.event_id, 'topup', 'card') END,
        p_amount, p_fee => v_fee, p_tag_id => v_tag.id, p_assignment_id => p_assignment_id,
        p_terminal_tx_number => p_terminal_tx_number, p_payment => v_method);
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = v_id;
    SELECT * INTO transaction_id, state, balance FROM ledger.balance_answer(v_id);
END
$$;
COMMENT ON FUNCTION api.topup IS 'Tops up a tag at a top-up terminal (cash or card, less the fee). Returns transaction_id, state, balance.';

CREATE OR REPLACE FUNCTION api.refund(p_assignment_id bigint, p_terminal_tx_number bigint, p_uid text, p_amount bigint,
                                      OUT transaction_id bigint, OUT state text, OUT balance bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Pays leftover money out in cash at a top-up terminal (drawer <- customer).
-- Returns transaction, state Committed and the new balance; a repeat returns the first booking. Raises
-- insufficient-balance, tag-blocked, wrong-position, validation.
DECLARE
    ctx record := ledger.terminal_context(p_assignment_id, 'topup');
    v_tag ledger.tag := ledger.find_tag(ctx.event_id, p_uid);
    v_account ledger.account := ledger.lock_account(v_tag.account_id);
    t ledger.transaction := ledger.terminal_tx(p_assignment_id, ledger.positive(p_terminal_tx_number, 'terminal_tx_number'));
    v_id bigint;
BEGIN
    IF t.id IS NOT NULL THEN
        PERFORM ledger.same_request(t, 'refund', v_tag.account_id, p_amount);
        SELECT * INTO transaction_id, state, balance FROM ledger.balance_answer(t.id);
        RETURN;
    END IF;
    PERFORM ledger.refuse_blocked(v_tag);
    v_id := ledger.new_transaction(
        ctx.event_id, 'refund', 'Committed', v_tag.account_id, ctx.cash_account_id, p_amount, p_tag_id => v_tag.id,
        p_assignment_id => p_assignment_id, p_terminal_tx_number => p_terminal_tx_number, p_payment => 'cash');
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = v_id;
    SELECT * INTO transaction_id, state, balance FROM ledger.balance_answer(v_id);
END
$$;
COMMENT ON FUNCTION api.refund IS 'Pays leftover money out in cash at a top-up terminal. Returns transaction_id, state, balance.';

CREATE OR REPLACE FUNCTION api.deposit_return(p_assignment_id bigint, p_terminal_tx_number bigint, p_uid text,
                                              p_items jsonb, OUT transaction_id bigint, OUT state text, OUT balance bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Gives the deposit of returned items (returnable products) back to the customer (customer <- deposit).
-- Returns transaction, state Committed and the new balance; a repeat returns the first booking. Raises validation.
DECLARE
    ctx record := ledger.terminal_context(p_assignment_id);
    v_tag ledger.tag := ledger.find_tag(ctx.event_id, p_uid);
    v_account ledger.account := ledger.lock_account(v_tag.account_id);
    t ledger.transaction := ledger.terminal_tx(p_assignment_id, ledger.positive(p_terminal_tx_number, 'terminal_tx_number'));
    v_amount bigint;
    v_id bigint;
BEGIN
    IF jsonb_typeof(p_items) <> 'array' THEN
        PERFORM ledger.fail('validation', 'items must be a list', '{"field": "items"}');
    END IF;
    SELECT sum(ledger.json_int(i, 'quantity') * p.price) INTO v_amount
      FROM jsonb_array_elements(p_items) i LEFT JOIN ledger.product p ON p.id = ledger.json_int(i, 'product_id');
    IF t.id IS NOT NULL THEN
        PERFORM ledger.same_request(t, 'deposit_return', v_tag.account_id, v_amount, p_items => p_items);
        SELECT * INTO transaction_id, state, balance FROM ledger.balance_answer(t.id);
        RETURN;
    END IF;
    IF v_amount IS NULL OR v_amount <= 0 THEN
        PERFORM ledger.fail('validation', 'return at least one returnable item', '{"field": "items"}');
    END IF;
    v_id := ledger.new_transaction(
        ctx.event_id, 'deposit_return', 'Committed', v_tag.account_id,
        ledger.system_account(ctx.event_id, 'deposit', 'deposit'), v_amount, p_tag_id => v_tag.id,
        p_assignment_id => p_assignment_id, p_terminal_tx_number => p_terminal_tx_number);
    PERFORM ledger.add_items(v_id, ctx.event_id, p_items, v_amount, p_returnable_only => true);
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = v_id;
    SELECT * INTO transaction_id, state, balance FROM ledger.balance_answer(v_id);
END
$$;
COMMENT ON FUNCTION api.deposit_return IS 'Pays back the deposit of returned items. Returns transaction_id, state, balance.';

CREATE OR REPLACE FUNCTION api.open_loop_purchase(p_assignment_id bigint, p_terminal_tx_number bigint, p_uid text,
                                                  p_tag_tx_number integer, p_amount bigint, p_items jsonb,
                                                  p_card_amount bigint,
                                                  OUT transaction_id bigint, OUT topup_transaction_id bigint,
                                                  OUT state text, OUT balance bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A purchase paid partly by card at the till when credit is short: a card top-up and the purchase (linked_id = the
-- top-up),
-- both booked in this one database transaction or neither. Returns both ids, state Committed and the balance after.
-- Raises insufficient-balance when balance plus card amount less fee does not cover it, and the checks of both parts.
DECLARE
    ctx record := ledger.terminal_context(p_assignment_id, 'sale');
    v_tag ledger.tag := ledger.find_tag(ctx.event_id, p_uid);
    v_account ledger.account := ledger.lock_account(v_tag.account_id);
    t ledger.transaction := ledger.terminal_tx(p_assignment_id, ledger.positive(p_terminal_tx_number, 'terminal_tx_number'));
    v_fee bigint;
BEGIN
    IF t.id IS NOT NULL THEN
        PERFORM ledger.same_request(t, 'purchase', v_tag.account_id, p_amount, 'card', p_tag_tx_number, p_items);
        SELECT b.transaction_id, b.state, b.balance INTO transaction_id, state, balance FROM ledger.balance_answer(t.id) b;
        topup_transaction_id := t.linked_id;
        RETURN;
    END IF;
    PERFORM ledger.positive(p_card_amount, 'card_amount');
    PERFORM ledger.refuse_blocked(v_tag);
    v_fee := ledger.topup_fee(ctx.event_id, 'card');
    -- The card part is the shortfall a customer chose to pay: the min/max top-up bounds do not apply, and the
    -- maximum balance is checked on what is left after the purchase.
    PERFORM ledger.check_topup(ctx.event_id, v_tag.id, v_account,
                               p_card_amount - ledger.positive(p_amount, 'amount'), v_fee, p_bounds => false);
    -- linked_id always points to the earlier transaction: the purchase references the top-up that funds it.
    topup_transaction_id := ledger.new_transaction(
        ctx.event_id, 'topup', 'Committed', v_tag.account_id, ledger.system_account(ctx.event_id, 'topup', 'card'),
        p_card_amount, p_fee => v_fee, p_tag_id => v_tag.id, p_payment => 'card');
    transaction_id := ledger.new_transaction(
        ctx.event_id, 'purchase', 'Committed', v_tag.account_id, ctx.merchant_account_id, p_amount,
        p_tag_id => v_tag.id, p_tag_tx_number => ledger.tag_number(p_tag_tx_number), p_assignment_id => p_assignment_id,
        p_terminal_tx_number => p_terminal_tx_number, p_payment => 'card', p_linked_id => topup_transaction_id);
    PERFORM ledger.add_items(transaction_id, ctx.event_id, p_items, p_amount);
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = topup_transaction_id;
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = transaction_id;
    SELECT b.state, b.balance INTO state, balance FROM ledger.balance_answer(transaction_id) b;
END
$$;
COMMENT ON FUNCTION api.open_loop_purchase IS
    'Purchase with a linked card top-up for the shortfall; both booked or neither. Returns both ids, state, balance.';

CREATE OR REPLACE FUNCTION api.chargeback(p_purchase_id bigint, p_amount bigint,
                                          OUT transaction_id bigint, OUT state text, OUT balance bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A merchant returns (part of) a committed purchase to the customer (customer <- merchant).
-- Returns the chargeback, its state and the customer's balance; raises chargeback-exceeds-purchase when more than
-- what is left of the purchase's merchant share would be returned, not-found for anything but a committed purchase.
DECLARE
    p ledger.transaction;
    v_left bigint;
    v_id bigint;
BEGIN
    SELECT * INTO p FROM ledger.transaction WHERE id = p_purchase_id;
    IF NOT FOUND OR p.type <> 'purchase' THEN
        PERFORM ledger.fail('not-found', format('purchase %s does not exist', p_purchase_id));
    END IF;
    PERFORM ledger.lock_account(p.account_id);
    SELECT * INTO p FROM ledger.transaction WHERE id = p_purchase_id FOR UPDATE;   -- serialises chargebacks of it
    IF p.state <> 'Committed' THEN
        PERFORM ledger.fail('not-found', format('purchase %s is %s, not committed', p_purchase_id, p.state));
    END IF;
    PERFORM ledger.positive(p_amount, 'amount');
    SELECT coalesce(sum(b.amount) FILTER (WHERE b.debit_account_id = p.other_account_id), 0)
         - coalesce((SELECT sum(c.amount) FROM ledger.transaction c
                      WHERE c.linked_id = p.id AND c.type = 'chargeback' AND c.state = 'Committed'), 0)
      INTO v_left
      FROM ledger.booking b WHERE b.transaction_id = p.id;
    IF p_amount > v_left THEN
        PERFORM ledger.fail('chargeback-exceeds-purchase', format('only %s of purchase %s is left to return', v_left, p.id),
                            jsonb_build_object('left', v_left));
    END IF;
    v_id := ledger.new_transaction(p.event_id, 'chargeback', 'Committed', p.account_id, p.other_account_id, p_amount,
                                   p_tag_id => p.tag_id, p_linked_id => p.id);
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = v_id;
    SELECT * INTO transaction_id, state, balance FROM ledger.balance_answer(v_id);
END
$$;
COMMENT ON FUNCTION api.chargeback IS 'Returns part or all of a committed purchase''s merchant share to the customer. Returns transaction_id, state, balance.';

CREATE OR REPLACE FUNCTION api.transfer(p_event_id bigint, p_from_uid text, p_to_uid text, p_amount bigint DEFAULT NULL,
                                        OUT transaction_id bigint, OUT from_balance bigint, OUT to_balance bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Moves money from one tag's account to another's (lost wristband: all of it, the default; or between visitors).
-- Returns the transaction and both balances after; raises insufficient-balance, tag-blocked (receiver),
-- payout-locked (the receiver is in an open payout run), max-balance-exceeded, validation.
DECLARE
    v_from ledger.tag := ledger.find_tag(p_event_id, p_from_uid);
    v_to ledger.tag := ledger.find_tag(p_event_id, p_to_uid, true);
    a ledger.account;
    v_amount bigint := p_amount;
BEGIN
    IF v_from.id = v_to.id THEN
        PERFORM ledger.fail('validation', 'a transfer needs two different tags', '{"field": "to_uid"}');
    END IF;
    -- Lock both accounts in id order, so that opposite transfers cannot deadlock.
    PERFORM ledger.lock_account(least(v_from.account_id, v_to.account_id));
    PERFORM ledger.lock_account(greatest(v_from.account_id, v_to.account_id));
    a := ledger.lock_account(v_from.account_id);
    v_amount := ledger.positive(coalesce(v_amount, a.balance - a.held), 'amount');
    PERFORM ledger.refuse_blocked(v_to);
    PERFORM ledger.check_topup(p_event_id, v_to.id, ledger.lock_account(v_to.account_id), v_amount, 0,
                               p_bounds => false);
    transaction_id := ledger.new_transaction(p_event_id, 'transfer', 'Committed', v_from.account_id, v_to.account_id,
                                             v_amount, p_tag_id => v_from.id);
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = transaction_id;
    SELECT balance INTO from_balance FROM ledger.account WHERE id = v_from.account_id;
    SELECT balance INTO to_balance FROM ledger.account WHERE id = v_to.account_id;
END
$$;
COMMENT ON FUNCTION api.transfer IS 'Moves money between two tags of an event (default: all that is available). Returns transaction_id, from_balance, to_balance.';

CREATE OR REPLACE FUNCTION api.payout(p_event_id bigint, p_uid text, p_amount bigint DEFAULT NULL,
                                      OUT transaction_id bigint, OUT paid_out bigint, OUT fee bigint, OUT balance bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Pays leftover money back to the customer's bank after the event (payout <- customer, fee <- customer).
-- Returns the transaction, what is paid out (amount less the payout fee), the fee and the balance after;
-- raises insufficient-balance, validation when the amount does not exceed the fee.
DECLARE
    v_tag ledger.tag := ledger.find_tag(p_event_id, p_uid);
    a ledger.account := ledger.lock_account(v_tag.account_id);
    v_amount bigint := coalesce(p_amount, a.balance - a.held);
BEGIN
    SELECT e.payout_fee INTO fee FROM ledger.event e WHERE e.id = p_event_id;
    IF v_amount IS NULL OR v_amount <= fee THEN
        PERFORM ledger.fail('validation', format('a payout must exceed the payout fee of %s', fee), '{"field": "amount"}');
    END IF;
    transaction_id := ledger.new_transaction(p_event_id, 'payout', 'Committed', v_tag.account_id,
                                             ledger.system_account(p_event_id, 'payout', 'payout'), v_amount,
                                             p_fee => fee, p_tag_id => v_tag.id, p_payment => 'online');
    PERFORM ledger.book(x, false) FROM ledger.transaction x WHERE x.id = transaction_id;
    paid_out := v_amount - fee;
    SELECT x.balance INTO balance FROM ledger.account x WHERE x.id = v_tag.account_id;
END
$$;
COMMENT ON FUNCTION api.payout IS 'Pays a customer''s leftover money to the bank, less the payout fee. Returns transaction_id, paid_out, fee, balance.';

CREATE OR REPLACE FUNCTION ledger.conclude(p_tx_id bigint, p_to ledger.tx_state, p_actor text, p_payload jsonb,
                                           OUT transaction_id bigint, OUT state text, OUT outcome text, OUT problem text)
LANGUAGE plpgsql AS $$
-- Moves an existing transaction to p_to under its customer's lock and books it if it becomes Committed
-- (an overdraft is flagged, never refused: the money has moved outside already).
-- Returns the state after and outcome booked, duplicate or rejected (invalid-transition, violation logged).
DECLARE
    v_account bigint;
    v_result text;
BEGIN
    SELECT t.account_id INTO v_account FROM ledger.transaction t WHERE t.id = p_tx_id;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('transaction %s does not exist', p_tx_id));
    END IF;
    PERFORM ledger.lock_account(v_account);
    v_result := ledger.set_state(p_tx_id, p_to, p_actor, p_payload, true);
    transaction_id := p_tx_id;
    SELECT t.state::text INTO state FROM ledger.transaction t WHERE t.id = p_tx_id;
    outcome := CASE v_result WHEN 'changed' THEN 'booked' WHEN 'duplicate' THEN 'duplicate' ELSE 'rejected' END;
    problem := CASE WHEN v_result = 'invalid' THEN 'invalid-transition' END;
END
$$;

CREATE OR REPLACE FUNCTION api.external_topup_create(p_event_id bigint, p_uid text, p_amount bigint)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Starts an online (or auto) top-up in state Open, before anything is sent to the payment provider.
-- Returns the transaction id; raises topup-out-of-bounds, max-balance-exceeded, tag-blocked, payout-locked (the tag
-- is in an open payout run), not-found.
DECLARE
    v_tag ledger.tag := ledger.find_tag(p_event_id, p_uid);
    v_account ledger.account := ledger.lock_account(v_tag.account_id);
    v_fee bigint := ledger.topup_fee(p_event_id, 'online');
BEGIN
    PERFORM ledger.positive(p_amount, 'amount');
    PERFORM ledger.refuse_blocked(v_tag);
    PERFORM ledger.check_topup(p_event_id, v_tag.id, v_account, p_amount, v_fee);
    RETURN ledger.new_transaction(p_event_id, 'topup', 'Open', v_tag.account_id,
                                  ledger.system_account(p_event_id, 'topup', 'online'), p_amount,
                                  p_fee => v_fee, p_tag_id => v_tag.id, p_payment => 'online');
END
$$;
COMMENT ON FUNCTION api.external_topup_create IS 'Creates an online top-up in state Open. Returns the transaction id.';

CREATE OR REPLACE FUNCTION api.external_topup_pending(p_tx_id bigint)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text)
LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Marks an online top-up as under way at the payment provider (Open -> ExternalPending), just before calling it.
-- Returns state and outcome (rejected: invalid-transition, logged).
    SELECT * FROM ledger.conclude(p_tx_id, 'ExternalPending', session_user, '{}');
$$;
COMMENT ON FUNCTION api.external_topup_pending IS 'Open -> ExternalPending, just before calling the payment provider. Returns state and outcome.';

CREATE OR REPLACE FUNCTION api.external_topup_result(p_tx_id bigint, p_result text)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Records the payment provider's answer: success books the top-up (customer <- topup online, fee), failure aborts,
-- unknown (the background check gave up) moves it to ExternalUnknown. Returns state and outcome. The limits were
-- checked when it was created; the provider has taken the money by now, so it is booked even above the maximum.
BEGIN
    IF p_result IS NULL OR p_result NOT IN ('success', 'failure', 'unknown') THEN
        PERFORM ledger.fail('validation', 'result must be success, failure or unknown', '{"field": "result"}');
    END IF;
    RETURN QUERY SELECT * FROM ledger.conclude(
        p_tx_id,
        CASE p_result WHEN 'success' THEN 'Committed' WHEN 'failure' THEN 'Aborted' ELSE 'ExternalUnknown' END::ledger.tx_state,
        session_user, jsonb_build_object('provider_result', p_result));
END
$$;
COMMENT ON FUNCTION api.external_topup_result IS 'Records the provider''s answer (success, failure, unknown) to an online top-up. Returns state and outcome.';

CREATE OR REPLACE FUNCTION ledger.resolve(p_tx_id bigint, p_state text, p_reason text, p_actor text)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text) LANGUAGE plpgsql AS $$
-- An admin (p_actor: who, kept with the state change) decides a transaction whose outcome is unknown
-- (TerminalConfirmUnknown, ExternalUnknown): Committed books it (an overdraft is flagged), Aborted releases it. An
-- online top-up (one with a checkout) is booked only by the provider's paid (api.external_topup_settle): an admin may
-- abort it, never commit it; its checkout row is locked first (the lock order of api.external_topup_settle), a paid
-- after the abort makes its refund due, and the relay's provider request ends when nothing is left to ask.
-- Returns state and outcome (rejected, violation logged, for one still in progress); raises not-found, validation
-- (also Committed for an online top-up the provider has not reported paid).
DECLARE
    t ledger.transaction;
    c ledger.external_checkout;
BEGIN
    IF p_state IS NULL OR p_state NOT IN ('Committed', 'Aborted') THEN
        PERFORM ledger.fail('validation', 'state must be Committed or Aborted', '{"field": "state"}');
    END IF;
    IF coalesce(btrim(p_reason), '') = '' THEN
        PERFORM ledger.fail('validation', 'say why', '{"field": "reason"}');
    END IF;
    SELECT * INTO c FROM ledger.external_checkout x WHERE x.transaction_id = p_tx_id FOR UPDATE;
    SELECT * INTO t FROM ledger.transaction x WHERE x.id = p_tx_id;          -- its state under the checkout's lock
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('transaction %s does not exist', p_tx_id));
    END IF;
    IF c.reference IS NOT NULL AND p_state = 'Committed' AND t.state <> 'Committed' THEN
        PERFORM ledger.fail('validation',
                            'the provider has not reported this online top-up paid, so it cannot be booked: abort '
                            'it (a payment the provider reports later is then refunded: it comes back to this '
                            'queue as a refund) or wait for the provider''s answer',
                            jsonb_build_object('field', 'outcome', 'state', t.state, 'reference', c.reference));
    END IF;
    IF t.state NOT IN ('TerminalConfirmUnknown', 'ExternalUnknown', 'Committed', 'Aborted') THEN
        -- Anything still in progress is decided by its terminal or provider, not by an admin.
        PERFORM ledger.log_violation(p_actor, t.event_id, t.id, t.state, p_state::ledger.tx_state,
                                     'admin resolution of a transaction still in progress', jsonb_build_object('reason', p_reason));
        RETURN QUERY SELECT t.id, t.state::text, 'rejected'::text, 'invalid-transition'::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM ledger.conclude(p_tx_id, p_state::ledger.tx_state, p_actor,
                                               jsonb_build_object('reason', p_reason, 'by', 'admin'));
    IF c.reference IS NOT NULL THEN
        PERFORM ledger.provider_request_end(p_tx_id);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION api.resolve_transaction(p_tx_id bigint, p_state text, p_reason text)
RETURNS TABLE (transaction_id bigint, state text, outcome text, problem text)
LANGUAGE sql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A DBA decides a transaction whose outcome is unknown (ledger.resolve, the DBA's login named as who decided).
-- Returns state and outcome; raises not-found, validation.
    SELECT * FROM ledger.resolve(p_tx_id, p_state, p_reason, session_user);
$$;
COMMENT ON FUNCTION api.resolve_transaction IS 'Admin decision on a TerminalConfirmUnknown or ExternalUnknown transaction. Returns state and outcome.';

CREATE OR REPLACE FUNCTION api.expire_reservations(p_event_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Expires ReservePending transactions whose reserve timeout has passed (-> ReserveExpired), releasing their hold.
-- Returns how many expired. Called periodically by the listener; a DBA may call it too.
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT t.id, t.account_id FROM ledger.transaction t
              WHERE t.state = 'ReservePending' AND t.expires_at <= now()
                AND (p_event_id IS NULL OR t.event_id = p_event_id)
              ORDER BY t.account_id, t.id
              LIMIT 10000
    LOOP
        PERFORM ledger.lock_account(r.account_id);
        -- Re-read under the lock: a commit may have won the race.
        IF EXISTS (SELECT FROM ledger.transaction t WHERE t.id = r.id AND t.state = 'ReservePending' AND t.expires_at <= now()) THEN
            PERFORM ledger.set_state(r.id, 'ReserveExpired', session_user, '{"reason": "reserve timeout"}');
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION api.expire_reservations IS 'Expires overdue ReservePending transactions (-> ReserveExpired). Returns how many.';

CREATE OR REPLACE FUNCTION api.terminal_transaction(p_assignment_id bigint, p_terminal_tx_number bigint,
                                                    OUT transaction_id bigint, OUT state text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- Looks up a terminal transaction by its number, for a terminal that lost an answer.
-- Returns its id and state; raises not-found when the backend has not seen it, terminal-revoked for a revoked
-- assignment.
BEGIN
    PERFORM ledger.assignment_event(p_assignment_id);
    SELECT t.id, t.state::text INTO transaction_id, state FROM ledger.transaction t
     WHERE t.assignment_id = p_assignment_id AND t.terminal_tx_number = p_terminal_tx_number;
    IF NOT FOUND THEN
        PERFORM ledger.fail('not-found', format('terminal transaction %s is not known', p_terminal_tx_number));
    END IF;
END
$$;
COMMENT ON FUNCTION api.terminal_transaction IS 'A terminal transaction''s id and state, by assignment and terminal number; not-found when unseen.';

CREATE OR REPLACE FUNCTION api.customer_statement(p_event_id bigint, p_uid text)
RETURNS TABLE (transaction_id bigint, booked_at timestamptz, type text, counterparty text, amount bigint, balance_after bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
-- A customer's statement: every booking line on the tag's account, signed from the customer's side, with the running balance.
-- Returns rows oldest first; raises not-found for an unknown tag.
DECLARE
    v_tag ledger.tag := ledger.find_tag(p_event_id, p_uid);
BEGIN
    RETURN QUERY
    SELECT b.transaction_id, b.booked_at, t.type::text, o.kind::text || ':' || o.name,
           CASE WHEN b.debit_account_id = v_tag.account_id THEN b.amount ELSE -b.amount END,
           (sum(CASE WHEN b.debit_account_id = v_tag.account_id THEN b.amount ELSE -b.amount END)
               OVER (ORDER BY b.booked_at, b.transaction_id, b.line_no))::bigint
      FROM ledger.booking b
      JOIN ledger.transaction t ON t.id = b.transaction_id
      JOIN ledger.account o ON o.id = CASE WHEN b.debit_account_id = v_tag.account_id THEN b.credit_account_id ELSE b.debit_account_id END
     WHERE b.debit_account_id = v_tag.account_id OR b.credit_account_id = v_tag.account_id
     ORDER BY b.booked_at, b.transaction_id, b.line_no;
END
$$;
COMMENT ON FUNCTION api.customer_statement IS 'Every booking on a tag''s account, signed from the customer''s side, with the running balance.';
