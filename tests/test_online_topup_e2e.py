"""Online top-up end to end over real HTTP: a real gateway (terminal API, admin site, portal and
``POST /provider/webhook``), the simulated provider as its own process (``festpay provider-sim``), and a relay with
the ``provider`` handler polling it, in a database of its own (``festpay_online_topup``).

A visitor signs in, POSTs an amount at ``/portal/topup``, is sent (303) to the hosted checkout, pays there, comes back
to ``/portal/topup/{reference}`` and sees "pending" until the webhook or the relay's poll settles it. One test per
behaviour: pays (the webhook books once), webhook-twice (books once), no-webhook (polling books), declines (Aborted,
nothing booked), abandoned (the visitor never pays or cancels: the checkout expires, declined, nothing booked),
never-answers (stays pending, never "failed"; past the event's check window ExternalUnknown, still "pending", until
an admin aborts it on the queue page: its item shows the provider's last answer and offers Aborted only, none
preselected, and booking it by hand is refused next to the outcome; the relay still asks the provider for its final
answer after the abort), late (answers after the check window: ExternalUnknown in between, then Committed); a
provider that takes the money after an admin's abort and sends no webhook: the relay's poll finds it, refund due in
the admin queue; webhooks racing the relay's poll book once; a payment that arrives for a blocked tag is not booked
but refunded: the admin queue page shows it, support POSTs "Refund", the relay refunds it at the provider and the
visitor sees "refunded"; a webhook with a bad signature is a 401 problem that changes nothing; ``festpay relay`` (the
command) checks online top-ups too. ``api.check_invariants()`` is empty after each.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import http.client
import json
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest

from python_gateway.config import PROJECT_ROOT
from python_gateway.provider.http_client import HttpProvider
from python_gateway.provider.sim import DEFAULT_EXPIRES_IN_S
from python_gateway.relay import ProviderHandler, relay_service
from python_gateway.signing import PROVIDER_SIGNATURE_HEADER, provider_webhook_signature
from tests.child_process import provider_sim
from tests.conftest import own_database
from tests.gateway_server import RunningGateway, scalar, start_admin_gateway
from tests.test_admin_http import PASSWORD, Session, admin_session, portal_session

DBNAME = "festpay_online_topup"
SECRET = "e2e-provider-secret"
PIN = "2580"
EN = {"Accept-Language": "en-GB,en;q=0.9"}
SETTLE_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """The simulated payment provider, its own process on a free port."""
    with provider_sim(SECRET) as url:
        yield url


@pytest.fixture(scope="module")
def db(pg_cluster) -> Iterator[psycopg.Connection]:
    with own_database(pg_cluster, DBNAME) as conn:
        yield conn


@pytest.fixture(scope="module")
def site(pg_cluster, db, sim_url) -> Iterator[RunningGateway]:
    provider = HttpProvider(sim_url, SECRET, timeout=5)
    with start_admin_gateway(pg_cluster, dbname=DBNAME, apps=("terminal", "admin", "portal"),
                             portal_login_attempts=1000, provider=provider) as gw:
        provider.webhook_url = gw.base_url + "/provider/webhook"
        yield gw


@pytest.fixture(scope="module")
def relay(pg_cluster, db, sim_url) -> Iterator[None]:
    """A relay with the provider handler, in a thread of its own with its own event loop."""
    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with HttpProvider(sim_url, SECRET, timeout=5) as provider:
            async with relay_service(pg_cluster.url(DBNAME, user="festpay_relay"), [ProviderHandler(provider)],
                                     poll_s=0.5, workers=2, expire_s=None):
                started.set()
                await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(20)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.fixture(scope="module")
def event(db) -> int:
    return scalar(db, "SELECT api.create_event(%s, 'EUR', 100000, 500, 50000)", (f"online {secrets.token_hex(3)}",))


def request(url: str, method: str = "GET", form: dict[str, str] | None = None,
         headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    if form is not None:
        body = urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def set_behaviour(sim_url: str, behaviour: str, delay_s: float | None = None,
                  expires_in_s: float = DEFAULT_EXPIRES_IN_S) -> None:
    """The sim's defaults for the next checkouts: ``behaviour`` (``late``: after ``delay_s``), expiring after
    ``expires_in_s`` unless paid or cancelled."""
    body = {"behaviour": behaviour, "expires_in_s": expires_in_s}
    if delay_s is not None:
        body["behaviour_delay_s"] = delay_s
    status, _, raw = request(sim_url + "/v1/sim/default-behaviour", "PUT", headers={"Content-Type": "application/json"},
                          body=json.dumps(body).encode())
    assert status == 204, raw


@contextlib.contextmanager
def check_window(db, event: int, seconds: float) -> Iterator[None]:
    """The event's provider check window set to ``seconds`` (as the DBA) while the block runs."""
    before = scalar(db, "SELECT provider_check_window FROM ledger.event WHERE id = %s", (event,))
    db.execute("UPDATE ledger.event SET provider_check_window = make_interval(secs => %s) WHERE id = %s",
               (seconds, event))
    try:
        yield
    finally:
        db.execute("UPDATE ledger.event SET provider_check_window = %s WHERE id = %s", (before, event))


@pytest.fixture(scope="module")
def admins(db, site, event) -> dict[str, Session]:
    """A signed-in admin site browser for the roles support and viewer (the event is the admin site's: the newest)."""
    out = {}
    for role in ("support", "viewer"):
        name = f"e2e-{role}-{secrets.token_hex(3)}"
        scalar(db, "SELECT * FROM api.create_admin_user(%s, %s, %s)", (name, role, PASSWORD))
        out[role] = admin_session(site.port, name)
    return out


def visitor(db, site: RunningGateway, event: int) -> tuple[Session, str]:
    """A visitor signed in at the portal with a new wristband of the event; returns (session, uid)."""
    uid = secrets.token_hex(7).upper()
    scalar(db, "SELECT api.create_tag(%s, %s, %s)", (event, uid, PIN))
    return portal_session(site.port, uid, PIN), uid


def to_checkout(s: Session, sim_url: str, amount: str = "20,00") -> str:
    """POST /portal/topup; returns the hosted checkout's URL the browser is sent to."""
    form = s.get("/portal/topup", headers=EN)
    assert form.status == 200 and 'name="amount"' in form.text, form.text[:1000]
    # A browser follows the form's redirect to the hosted checkout only if the page's CSP lets forms lead there.
    assert f"form-action 'self' {sim_url}" in form.header("Content-Security-Policy"), form.header("Content-Security-Policy")
    page = s.post("/portal/topup", {"amount": amount}, csrf=form.csrf())
    assert page.status == 303, page.text[:1000]
    assert page.location.startswith(sim_url + "/checkout/co_"), page.location
    return page.location


def top_up(s: Session, sim_url: str, amount: str = "20,00", action: str = "pay",
           before_pay: Callable[[], None] | None = None) -> tuple[str, str]:
    """POST /portal/topup, then (after ``before_pay``) pay (or cancel) on the hosted page; returns (reference, the
    portal's return path)."""
    checkout_url = to_checkout(s, sim_url, amount)
    if before_pay is not None:
        before_pay()
    status, headers, raw = request(checkout_url, "POST", form={"action": action})
    assert status == 303, raw
    back = urlsplit(headers["location"])
    reference = back.path.rsplit("/", 1)[1]
    assert back.path == f"/portal/topup/{reference}" and reference.startswith("ft_")
    return reference, back.path + "?" + back.query


def visitor_tops_up(db, site: RunningGateway, event: int, sim_url: str, behaviour: str,
                    delay_s: float | None = None) -> tuple[Session, str, str, str]:
    """The provider set to answer as ``behaviour`` (see set_behaviour); a new visitor signs in, tops up 20,00 and
    presses "pay" on the hosted checkout (see top_up). Returns (session, uid, reference, the portal's return path)."""
    set_behaviour(sim_url, behaviour, delay_s)
    s, uid = visitor(db, site, event)
    reference, path = top_up(s, sim_url)
    return s, uid, reference, path


def settled(db, s: Session, path: str, timeout: float = SETTLE_TIMEOUT_S) -> tuple[str, list[str]]:
    """Polls the return page until it is no longer pending; returns the final status and every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        page = s.get(path, headers=EN)
        assert page.status == 200, page.text[:500]
        assert "failed" not in page.text.split("<main")[1].lower()
        status = page.text.split('data-status="', 1)[1].split('"', 1)[0]
        seen.append(status)
        if status != "pending" or time.monotonic() > deadline:
            return status, seen
        time.sleep(0.2)


def money(db, event: int, uid: str, reference: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT t.state::text, a.balance, t.fee, (SELECT count(*) FROM ledger.booking b WHERE b.transaction_id = t.id) "
        "AS lines, (SELECT count(*) FROM unnest(t.state_changes) c WHERE c.to_state = 'Committed') AS commits, "
        "(SELECT c.actor FROM unnest(t.state_changes) c WHERE c.to_state = 'Committed' LIMIT 1) AS actor "
        "FROM ledger.external_checkout c JOIN ledger.transaction t ON t.id = c.transaction_id "
        "JOIN ledger.account a ON a.id = t.account_id WHERE c.reference = %s", (reference,)).fetchone()
    return dict(zip(("state", "balance", "fee", "lines", "commits", "actor"), row))


def invariants(db) -> list:
    return db.execute("SELECT * FROM api.check_invariants()").fetchall()


def checkout(db, reference: str) -> dict[str, Any]:
    """The checkout row with its transaction's state and states (from, to of every change)."""
    cur = db.execute(
        "SELECT c.*, t.state::text AS state, t.amount, "
        "ARRAY(SELECT x.from_state || '>' || x.to_state FROM unnest(t.state_changes) x) AS changes, "
        "(SELECT o.done_at IS NOT NULL FROM ledger.outbox o WHERE o.topic = 'provider' "
        " AND o.transaction_id = t.id) AS request_done "
        "FROM ledger.external_checkout c JOIN ledger.transaction t ON t.id = c.transaction_id WHERE c.reference = %s",
        (reference,))
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone()))


def wait_for(what: Callable[[], Any], timeout: float = SETTLE_TIMEOUT_S, every: float = 0.1) -> Any:
    """Calls ``what`` until it returns something true (returned) or the time is up (an assertion error)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {getattr(what, '__name__', what)}"
        time.sleep(every)


def poll_now(db, transaction_id: int) -> None:
    """The relay's next check of the checkout of ``transaction_id`` brought forward to now (as the DBA), so a test
    need not wait out the backoff (up to 60 s); a request that is done stays done."""
    db.execute("UPDATE ledger.outbox SET retry_at = now() WHERE topic = 'provider' AND transaction_id = %s "
               "AND done_at IS NULL", (transaction_id,))
    db.execute("SELECT pg_notify('festpay_outbox', 'provider')")


def provider_checks(db, reference: str) -> int:
    """How often the relay has asked the provider about the checkout ``reference`` without a final answer."""
    return scalar(db, "SELECT o.attempts FROM ledger.outbox o JOIN ledger.external_checkout c ON "
                      "c.transaction_id = o.transaction_id WHERE o.topic = 'provider' AND c.reference = %s",
                  (reference,))


def abort_in_queue(support: Session, tx_id: int, reason: str) -> None:
    """Support aborts the ExternalUnknown online top-up ``tx_id`` on the admin site's queue page."""
    page = support.post("/admin/queue/resolve", {"form": f"resolve-external-unknown-{tx_id}-", "transaction_id": tx_id,
                                                 "outcome": "Aborted", "reason": reason},
                        csrf=support.csrf("/admin/queue"))
    assert page.status == 303 and page.location == "/admin/queue?done=resolved", page.messages()


def status_of(s: Session, path: str) -> str:
    page = s.get(path, headers=EN)
    assert page.status == 200, page.text[:500]
    assert "failed" not in page.text.split("<main")[1].lower()
    return page.text.split('data-status="', 1)[1].split('"', 1)[0]


# ----------------------------------------------------------------------------- festpay relay (the command)


def test_festpay_relay_command_checks_online_top_ups(db, site, event, sim_url, pg_cluster, tmp_path):
    """``festpay relay`` alone (the module's relay is not running yet): it polls the provider, so a top-up without a
    webhook is booked by it (its login: DATABASE_URL's, acting as festpay_relay)."""
    env = dict(os.environ, DATABASE_URL=pg_cluster.url(DBNAME), FESTPAY_PROVIDER_SECRET=SECRET,
               FESTPAY_DATA_DIR=str(tmp_path / "data"))
    for name in ("FESTPAY_RELAY_DATABASE_URL", "FESTPAY_PROVIDER_URL", "FESTPAY_TSE_URL"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "python_gateway.cli", "relay", "--tse-dir", str(tmp_path / "tse"),
                             "--provider-url", sim_url, "--poll", "0.5", "--workers", "1"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not any(line.startswith("Relay ") for line in lines) and sel.select(20):
                lines.append(proc.stdout.readline())
                assert lines[-1], lines
        assert f"checking online top-ups with the payment provider at {sim_url}" in lines[-1], lines
        s, uid, reference, path = visitor_tops_up(db, site, event, sim_url, "no-webhook")
        status, seen = settled(db, s, path)
        assert status == "paid", seen
        m = money(db, event, uid, reference)
        assert m["state"] == "Committed" and m["commits"] == 1 and m["actor"] == "postgres", m
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0 and "Stopped." in out, out
    assert invariants(db) == []


@pytest.mark.parametrize("behaviour", ["pays", "webhook-twice", "no-webhook"])
def test_paid_top_up_is_booked_once(db, site, relay, event, sim_url, behaviour):
    s, uid, reference, path = visitor_tops_up(db, site, event, sim_url, behaviour)
    status, seen = settled(db, s, path)
    assert status == "paid", seen
    time.sleep(1.5 if behaviour == "webhook-twice" else 0.3)  # the second copy of the webhook arrives meanwhile
    m = money(db, event, uid, reference)
    assert m["state"] == "Committed" and m["balance"] == 2000 - m["fee"]
    assert m["lines"] == (2 if m["fee"] else 1) and m["commits"] == 1
    # who booked it: without a webhook only the relay's poll (festpay_relay) can; otherwise the webhook (festpay_web)
    # almost always wins, but a poll falling due at the same moment may book it instead: once, either way
    if behaviour == "no-webhook":
        assert m["actor"] == "festpay_relay", m
    else:
        assert m["actor"] in ("festpay_web", "festpay_relay"), m
    assert "20.00" in s.get("/portal/", headers=EN).text.replace(",", ".")
    assert invariants(db) == []


def test_declined_top_up_books_nothing(db, site, relay, event, sim_url):
    s, uid, reference, path = visitor_tops_up(db, site, event, sim_url, "declines")
    status, seen = settled(db, s, path)
    assert status == "declined", seen
    m = money(db, event, uid, reference)
    assert m["state"] == "Aborted" and m["balance"] == 0 and m["lines"] == 0
    assert invariants(db) == []


def test_abandoned_checkout_expires_and_is_declined(db, site, relay, event, sim_url):
    """The visitor is sent to the hosted checkout and never pays or cancels there (closes the page): the provider
    expires the checkout, so the top-up ends Aborted as declined, nothing booked -- not pending for ever, never
    ExternalUnknown, and no longer in the way of a payout. A Pay pressed later on the page left open is refused."""
    set_behaviour(sim_url, "pays", expires_in_s=1)
    try:
        s, uid = visitor(db, site, event)
        checkout_url = to_checkout(s, sim_url)
    finally:
        set_behaviour(sim_url, "pays")
    reference = scalar(db, "SELECT reference FROM ledger.external_checkout WHERE checkout_id = %s",
                       (checkout_url.rsplit("/", 1)[1],))
    path = f"/portal/topup/{reference}"

    def unresolved() -> bool:
        return scalar(db, "SELECT c.unresolved FROM ledger.payout_candidates(%s, (SELECT id FROM ledger.tag "
                          "WHERE event_id = %s AND uid = %s)) c", (event, event, uid))

    assert unresolved()  # while the checkout is open
    status, seen = settled(db, s, path)
    assert status == "declined", seen
    assert "The payment was not made: nothing was charged and nothing added." in s.get(path, headers=EN).text
    c = checkout(db, reference)
    assert c["changes"] == ["Open>ExternalPending", "ExternalPending>Aborted"], c
    assert (c["result"], c["refund_state"]) == ("declined", None) and c["request_done"], c
    m = money(db, event, uid, reference)
    assert m["state"] == "Aborted" and m["balance"] == 0 and m["lines"] == 0 and m["commits"] == 0, m
    assert 'data-money="pending">€0.00<' in s.get("/portal/", headers=EN).text
    assert not unresolved()
    status, _, raw = request(checkout_url, "POST", form={"action": "pay"})
    assert status == 409 and b"This checkout has expired" in raw, raw
    assert money(db, event, uid, reference)["balance"] == 0
    assert invariants(db) == []


def test_unanswered_top_up_stays_pending(db, site, relay, event, sim_url):
    s, uid, reference, path = visitor_tops_up(db, site, event, sim_url, "never-answers")
    status, seen = settled(db, s, path, timeout=2.5)
    assert status == "pending" and set(seen) == {"pending"}
    m = money(db, event, uid, reference)
    assert m["state"] == "ExternalPending" and m["balance"] == 0
    attempts = scalar(db, "SELECT o.attempts FROM ledger.outbox o JOIN ledger.external_checkout c ON "
                          "c.transaction_id = o.transaction_id WHERE o.topic = 'provider' AND c.reference = %s",
                      (reference,))
    assert attempts >= 1  # the relay polled and backed off
    assert invariants(db) == []


def test_webhook_with_bad_signature_is_refused(db, site, relay, event, sim_url):
    s, uid, reference, _ = visitor_tops_up(db, site, event, sim_url, "never-answers")
    checkout_id = scalar(db, "SELECT checkout_id FROM ledger.external_checkout WHERE reference = %s", (reference,))
    body = json.dumps({"type": "checkout.status", "checkout_id": checkout_id, "reference": reference,
                       "status": "paid", "amount": 2000, "currency": "EUR"}).encode()
    for headers in ({}, {PROVIDER_SIGNATURE_HEADER: provider_webhook_signature("wrong-secret", body)}):
        status, h, raw = request(site.base_url + "/provider/webhook", "POST", body=body,
                              headers={"Content-Type": "application/json", **headers})
        assert status == 401 and h["content-type"].startswith("application/problem+json"), raw
        assert json.loads(raw)["type"].endswith("webhook-refused")
    assert money(db, event, uid, reference)["state"] == "ExternalPending"
    # The same body, rightly signed, settles it -- and again is a duplicate.
    signed = {"Content-Type": "application/json", PROVIDER_SIGNATURE_HEADER: provider_webhook_signature(SECRET, body)}
    outcomes = [json.loads(request(site.base_url + "/provider/webhook", "POST", body=body, headers=signed)[2])["outcome"]
                for _ in range(2)]
    assert outcomes == ["booked", "duplicate"]
    m = money(db, event, uid, reference)
    assert m["state"] == "Committed" and m["commits"] == 1
    assert invariants(db) == []


# ----------------------------------------------------------------------------- the check window, late answers


def test_late_answer_after_the_check_window_is_booked(db, site, relay, event, sim_url):
    with check_window(db, event, 1):
        s, uid, reference, path = visitor_tops_up(db, site, event, sim_url, "late", delay_s=5)
        wait_for(lambda: checkout(db, reference)["state"] == "ExternalUnknown", timeout=5)
        assert status_of(s, path) == "pending"  # ExternalUnknown: the provider may still take the money
        status, seen = settled(db, s, path)
    assert status == "paid" and "pending" in seen, seen
    c = checkout(db, reference)
    assert c["changes"] == ["Open>ExternalPending", "ExternalPending>ExternalUnknown", "ExternalUnknown>Committed"], c
    assert c["request_done"] and c["refund_state"] is None
    m = money(db, event, uid, reference)
    assert m["balance"] == 2000 - m["fee"] and m["commits"] == 1 and m["lines"] == (2 if m["fee"] else 1)
    assert invariants(db) == []


def test_unanswered_top_up_becomes_unknown_until_an_admin_decides(db, site, relay, event, sim_url, admins):
    with check_window(db, event, 1):
        s, uid, reference, path = visitor_tops_up(db, site, event, sim_url, "never-answers")
        wait_for(lambda: checkout(db, reference)["state"] == "ExternalUnknown", timeout=6)
        before = provider_checks(db, reference)
        wait_for(lambda: provider_checks(db, reference) > before, timeout=6)  # polled on after ExternalUnknown
        assert status_of(s, path) == "pending"
        support = admins["support"]
        tx_id = checkout(db, reference)["transaction_id"]
        page = support.get("/admin/queue")
        assert 'id="kind-external-unknown"' in page.text and f'href="/admin/transactions/{tx_id}"' in page.text
        # the item shows what the relay last heard from the provider; Aborted is the only outcome, none preselected
        detail = scalar(db, "SELECT detail FROM api.admin_queue(%s) WHERE transaction_id = %s",
                        (support.session_token(), tx_id))
        assert detail["reference"] == reference and detail["checks"] >= 2 and detail["last_answer"], detail
        text = html.unescape(page.text)
        assert "Provider's last answer" in text and "Provider checks" in text and reference in text
        form = f"resolve-external-unknown-{tx_id}-"
        select = re.search(rf'<select id="{form}-outcome".*?</select>', page.text, re.S)
        assert select, page.text[:4000]
        assert re.findall(r'<option value="([^"]*)"', select.group(0)) == ["", "Aborted"], select.group(0)
        assert " selected" not in select.group(0) and " required" in select.group(0)
        # booking it by hand is refused, by the database, next to the outcome: only the provider's paid books it
        for outcome, message in (("Committed", "has not reported this online top-up paid"),
                                 ("", "Please fill in this field.")):
            page = support.post("/admin/queue/resolve", {"form": form, "transaction_id": tx_id, "outcome": outcome,
                                                         "reason": "the visitor says it is paid"},
                                csrf=support.csrf("/admin/queue"))
            assert page.status in (400, 422) and f'id="{form}-outcome-error"' in page.text, page.messages()
            assert message in html.unescape(page.text), page.messages()
            assert checkout(db, reference)["state"] == "ExternalUnknown"
        abort_in_queue(support, tx_id, "the provider has no payment")
        c = checkout(db, reference)
        assert c["state"] == "Aborted" and c["result"] is None, c
        assert status_of(s, path) == "declined"
    # the provider has not given its final answer: the relay keeps asking it (the provider may still take the money)
    assert not c["request_done"], c
    before = provider_checks(db, reference)
    poll_now(db, tx_id)
    wait_for(lambda: provider_checks(db, reference) > before, timeout=10)
    c = checkout(db, reference)
    assert c["state"] == "Aborted" and not c["request_done"] and c["refund_state"] is None, c
    assert money(db, event, uid, reference)["balance"] == 0
    assert invariants(db) == []


def test_paid_after_an_admins_abort_without_webhook_is_found_and_refund_due(db, site, relay, event, sim_url, admins):
    """The visitor leaves the hosted page open without paying; past the check window support aborts the top-up; then
    the visitor presses Pay after all and the provider takes the money but sends no webhook (``no-webhook``): the
    relay's poll, which goes on after the abort, finds it paid -- not booked, the refund due in the admin queue."""
    set_behaviour(sim_url, "no-webhook")
    s, uid = visitor(db, site, event)
    with check_window(db, event, 1):
        checkout_url = to_checkout(s, sim_url)
        reference = scalar(db, "SELECT reference FROM ledger.external_checkout WHERE checkout_id = %s",
                           (checkout_url.rsplit("/", 1)[1],))
        path = f"/portal/topup/{reference}"
        wait_for(lambda: checkout(db, reference)["state"] == "ExternalUnknown", timeout=6)
        tx_id = checkout(db, reference)["transaction_id"]
        support = admins["support"]
        abort_in_queue(support, tx_id, "the visitor says they did not pay")
    c = checkout(db, reference)
    assert (c["state"], c["result"], c["request_done"]) == ("Aborted", None, False), c
    assert status_of(s, path) == "declined"

    status, _, raw = request(checkout_url, "POST", form={"action": "pay"})  # the provider takes the money: no webhook
    assert status == 303, raw
    assert json.loads(request(f"{sim_url}/v1/checkouts/{c['checkout_id']}")[2])["status"] == "paid"
    poll_now(db, tx_id)
    wait_for(lambda: checkout(db, reference)["refund_state"] == "due")
    c = checkout(db, reference)
    assert (c["state"], c["result"], c["refund_reason"]) == ("Aborted", "paid", "aborted"), c
    assert c["changes"] == ["Open>ExternalPending", "ExternalPending>ExternalUnknown", "ExternalUnknown>Aborted"], c
    assert c["request_done"], c  # nothing left to ask until support asks for the refund
    m = money(db, event, uid, reference)
    assert m["balance"] == 0 and m["lines"] == 0 and m["commits"] == 0, m
    assert status_of(s, path) == "refunding"
    page = support.get("/admin/queue")
    assert 'id="kind-provider-refund"' in page.text and f'href="/admin/transactions/{tx_id}"' in page.text
    assert "the top-up was closed already (Aborted)" in html.unescape(page.text)
    item = db.execute("SELECT kind, amount, detail ->> 'reason' FROM api.admin_queue(%s) WHERE transaction_id = %s",
                      (support.session_token(), tx_id)).fetchall()
    assert item == [("provider-refund", 2000, "aborted")], item
    assert invariants(db) == []


# ----------------------------------------------------------------------------- webhooks racing the poll


def test_webhooks_racing_the_poll_book_once(db, site, relay, event, sim_url):
    """The provider's paid reaches us three times at once by webhook while the relay is woken to poll the same
    checkout: booked once (the row-level race itself: tests/test_online_topup_race.py)."""
    s, uid, reference, path = visitor_tops_up(db, site, event, sim_url, "no-webhook")
    c = checkout(db, reference)
    body = json.dumps({"type": "checkout.status", "checkout_id": c["checkout_id"], "reference": reference,
                       "status": "paid", "amount": 2000, "currency": "EUR"}).encode()
    headers = {"Content-Type": "application/json", PROVIDER_SIGNATURE_HEADER: provider_webhook_signature(SECRET, body)}
    barrier = threading.Barrier(4, timeout=20)
    answers: list[Any] = []

    def webhook() -> None:
        barrier.wait()
        status, _, raw = request(site.base_url + "/provider/webhook", "POST", body=body, headers=headers)
        answers.append((status, json.loads(raw).get("outcome")))

    def poll_now() -> None:
        barrier.wait()
        db.execute("UPDATE ledger.outbox SET retry_at = now() WHERE topic = 'provider' AND transaction_id = %s "
                   "AND done_at IS NULL", (c["transaction_id"],))
        db.execute("SELECT pg_notify('festpay_outbox', 'provider')")

    threads = [threading.Thread(target=webhook) for _ in range(3)] + [threading.Thread(target=poll_now)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(status == 200 for status, _ in answers) and len(answers) == 3, answers
    assert sorted(o for _, o in answers).count("booked") <= 1, answers
    status, seen = settled(db, s, path)
    assert status == "paid", seen
    m = money(db, event, uid, reference)
    assert m["state"] == "Committed" and m["commits"] == 1 and m["lines"] == (2 if m["fee"] else 1)
    assert m["balance"] == 2000 - m["fee"]
    assert invariants(db) == []


# ----------------------------------------------------------------------------- paid but not bookable: refunded


def test_paid_for_a_blocked_tag_is_refunded_through_the_provider(db, site, relay, event, sim_url, admins):
    set_behaviour(sim_url, "pays")
    s, uid = visitor(db, site, event)
    reference, path = top_up(s, sim_url, before_pay=lambda: scalar(
        db, "SELECT api.set_tag_blocked(%s, %s, true)", (event, uid)))
    status, seen = settled(db, s, path)
    assert status == "refunding", seen
    page = s.get(path, headers=EN)
    assert 'data-reason="tag-blocked"' in page.text and "will be refunded" in page.text
    c = checkout(db, reference)
    assert (c["state"], c["refund_state"], c["refund_reason"]) == ("Aborted", "due", "tag-blocked"), c
    assert money(db, event, uid, reference)["balance"] == 0
    tx_id = c["transaction_id"]
    form = f"refund-{tx_id}"

    # the queue page: the item with amount, tag and reason; only support has the Refund form
    viewer, support = admins["viewer"], admins["support"]
    page = viewer.get("/admin/queue")
    assert page.status == 200 and 'id="kind-provider-refund"' in page.text
    assert "Paid online but not bookable: refund through the provider" in page.text
    assert uid in page.text and "20.00" in page.text.replace(",", ".") and "the tag was blocked meanwhile" in page.text
    assert f'id="{form}-reason"' not in page.text
    assert viewer.post("/admin/queue/refund", {"transaction_id": tx_id, "reason": "x"},
                       csrf=viewer.csrf("/admin/queue")).status == 403
    page = support.get("/admin/queue")
    assert f'id="{form}-reason"' in page.text, page.text[:3000]
    assert support.post("/admin/queue/refund", {"transaction_id": tx_id, "reason": "x"}).status == 403  # no CSRF token
    page = support.post("/admin/queue/refund", {"form": form, "transaction_id": tx_id, "reason": ""},
                        csrf=page.csrf())
    assert page.status in (400, 422) and f'id="{form}-reason-error"' in page.text, page.messages()
    assert checkout(db, reference)["refund_state"] == "due"
    page = support.post("/admin/queue/refund", {"form": form, "transaction_id": tx_id,
                                                "reason": "the wristband was blocked"},
                        csrf=support.csrf("/admin/queue"))
    assert page.status == 303 and page.location == "/admin/queue?done=resolved", page.messages()

    # the relay refunds it at the provider, once
    wait_for(lambda: checkout(db, reference)["refund_state"] == "refunded")
    c = checkout(db, reference)
    assert c["refund_id"].startswith("re_") and c["request_done"] and c["state"] == "Aborted", c
    status, _, raw = request(f"{sim_url}/v1/checkouts/{c['checkout_id']}")
    assert status == 200 and json.loads(raw)["refunded"] == 2000, raw
    assert status_of(s, path) == "refunded"
    page = support.get("/admin/queue")
    assert f'href="/admin/transactions/{tx_id}"' not in page.text
    # asking again changes nothing: still one refund at the provider
    page = support.post("/admin/queue/refund", {"transaction_id": tx_id, "reason": "again"},
                        csrf=support.csrf("/admin/queue"))
    assert page.status == 303, page.messages()
    time.sleep(1.0)
    assert json.loads(request(f"{sim_url}/v1/checkouts/{c['checkout_id']}")[2])["refunded"] == 2000
    audit = db.execute("SELECT a.after FROM ledger.admin_audit a WHERE a.action = 'queue.refund' "
                       "AND a.object = %s", (f"transaction:{tx_id}",)).fetchall()
    assert len(audit) == 1 and audit[0][0]["reason"] == "the wristband was blocked" and audit[0][0]["amount"] == 2000
    assert money(db, event, uid, reference)["balance"] == 0
    assert invariants(db) == []
