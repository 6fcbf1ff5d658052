"""The admin site in real headless Chromium: one operator story from sign-in to the DSFinV-K export.

Debian's chromium, driven by selenium through Debian's chromium-driver (tests/browser.py), against a real gateway
serving the terminal API and the admin site (tests/gateway_server.start_admin_gateway) on a database of its own (the
admin site runs the newest event; no other test's event or relay gets in the way).  Terminals are the reference
terminal (python_gateway.terminal), registered with the codes the page shows.

The story: sign in; create a merchant, its sale position and a top-up position, and a product; make registration
codes and register a till and a bar with them; top up a tag and sell the product, and watch the dashboard's revenue
change live; find the sale in /admin/transactions and open it; a bar that crashes mid-sale leaves a
TerminalConfirmUnknown, decided in /admin/queue; block the tag at /admin/customers/{uid} (the bar then refuses it);
download a report as CSV; close the tills and download the DSFinV-K export.  Every downloaded file is read back, the
ledger is checked after each step that changes it, and every admin page is saved as screenshots/admin-*.png.
"""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
import zipfile
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg.rows import dict_row
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from python_gateway.terminal import SimulatedCrash, State, Terminal, new_tag
from tests import gateway_server as gs
from tests.browser import Browser, Pages, browser  # noqa: F401  (pytest fixture)
from tests.conftest import own_database

DBNAME = "festpay_admin_browser"
OPERATOR, PASSWORD = "operator", "operator-password-1"
PRODUCT, PRICE = "Festival Lemonade", 380          # cents; typed as 3.80
UID = "04B0C0FFEE0001"
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the database and the site


@pytest.fixture(scope="module")
def owner(pg_cluster) -> Iterator[psycopg.Connection]:
    """A database of its own, migrated; a superuser connection (autocommit) to it."""
    with own_database(pg_cluster, DBNAME) as conn:
        yield conn


@pytest.fixture(scope="module")
def event_id(owner: psycopg.Connection) -> int:
    """The event (a DBA creates it) with its seller, and the operator's admin user; merchants, positions and
    products come from the pages."""
    event = gs.scalar(owner, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000, p_topup_fee_card => 50)",
                      (f"Browser Festival {secrets.token_hex(3)}",))
    owner.execute("SELECT api.set_seller(%s, 'Festwiese GmbH', 'Festwiese 1', '12345', 'Musterstadt', "
                  "'12/345/67890', 'DE123456789')", (event,))
    owner.execute("SELECT api.create_admin_user(%s, 'admin', %s)", (OPERATOR, PASSWORD))
    return event


@pytest.fixture(scope="module")
def site(pg_cluster, owner: psycopg.Connection) -> Iterator[gs.RunningGateway]:
    """The gateway with the terminal API and the admin site; the dashboard's summary every second."""
    with gs.start_admin_gateway(pg_cluster, DBNAME, dashboard_interval_s=1.0) as gateway:
        yield gateway


def one(owner: psycopg.Connection, query: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
    with owner.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, params).fetchone()
    assert row is not None, query
    return row


def invariants(owner: psycopg.Connection) -> None:
    assert owner.execute("SELECT * FROM api.check_invariants()").fetchall() == []


# ----------------------------------------------------------------------------- driving the pages


# ----------------------------------------------------------------------------- the story


def test_operator_story(browser: Browser, site: gs.RunningGateway, owner: psycopg.Connection, event_id: int,
                        tmp_path: Path):
    op = Pages(browser, site.base_url, "Festpay admin", "admin")
    d = op.driver
    # the browser's clock runs in another zone than the event's: every time on the pages is the event's
    d.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
    event_zone = ZoneInfo(one(owner, "SELECT time_zone FROM ledger.event WHERE id = %s", (event_id,))["time_zone"])

    # ---- sign in: a page of the site without a session shows the sign-in form
    op.open("/admin/customers")
    assert d.find_elements(By.ID, "username"), "the sign-in form"
    op.shot("login")
    op.fill({"username": OPERATOR, "password": PASSWORD})
    op.submit(op.form_of("username"))
    assert OPERATOR in op.text(".site-footer")
    # on a desktop the navigation is one row of links, below the site's name and the account links
    rows = d.execute_script("var tops = {}; document.querySelectorAll('.site-nav li').forEach(function (li) {"
                            " tops[Math.round(li.getBoundingClientRect().top)] = true; });"
                            " return Object.keys(tops).length;")
    assert rows == 1, f"the navigation wraps into {rows} rows at {d.get_window_size()}"

    # ---- the event's settings, as the DBA made them
    op.open("/admin/event", "event")
    assert d.find_element(By.ID, "event-seller_name").get_attribute("value") == "Festwiese GmbH"

    # ---- setup: a merchant, its sale position, a top-up position, a product
    op.open("/admin/merchants")
    op.fill_and_submit({"merchant-new-name": "Lemon Stand"})
    assert any("Lemon Stand" in row for row in op.table_rows())
    op.shot("merchants")
    op.open("/admin/positions")
    op.fill_and_submit({"position-new-name": "Lemon Bar", "position-new-kind": "sale",
                        "position-new-merchant_id": "Lemon Stand"})
    op.fill_and_submit({"position-new-name": "Top-up Desk", "position-new-kind": "topup",
                        "position-new-merchant_id": "(none: a top-up point)"})
    assert owner.execute("SELECT p.name, p.kind::text, m.name FROM ledger.position p"
                         " LEFT JOIN ledger.merchant m ON m.id = p.merchant_id WHERE p.event_id = %s ORDER BY p.id",
                         (event_id,)).fetchall() == [("Lemon Bar", "sale", "Lemon Stand"),
                                                     ("Top-up Desk", "topup", None)]
    op.shot("positions")
    op.open("/admin/products")
    op.fill_and_submit({"product-new-name": PRODUCT, "product-new-price": "3.80", "product-new-vat_rate": "19",
                        "product-new-fixed_price": True})
    row = next(r for r in op.table_rows() if PRODUCT in r)
    assert "3.80" in row and "19" in row, row
    op.shot("products")
    product = one(owner, "SELECT id, price, vat_rate::text AS vat, fixed_price FROM ledger.product "
                         "WHERE event_id = %s AND name = %s", (event_id, PRODUCT))
    assert (product["price"], product["vat"], product["fixed_price"]) == (PRICE, "19.00", True)

    # ---- registration codes (the page shows each), terminals registered with them
    def registration_code(position: str, shot: str | None = None) -> str:
        op.open("/admin/terminals")
        op.fill_and_submit({"code-position_id": f"{position}"})
        code = op.text("#registration-code").strip()
        assert len(code) == 12 and code.isalnum(), code
        assert d.find_elements(By.CSS_SELECTOR, ".qr-box svg"), "the QR code"
        if shot:
            op.shot(shot)
        return code

    bar_code = registration_code("Lemon Bar (sale)", "terminal-code")
    desk_code = registration_code("Top-up Desk (topup)")
    tag = tmp_path / "tags" / f"{UID}.json"
    tag.parent.mkdir()

    async def register() -> tuple[int, int]:
        bar = await Terminal.register(tmp_path / "bar", site.base_url, bar_code, device="browser bar")
        desk = await Terminal.register(tmp_path / "desk", site.base_url, desk_code, device="browser desk")
        async with bar, desk:
            new_tag(tag, UID, desk.settings.tag_key)
            return bar.assignment_id, desk.assignment_id

    bar_id, desk_id = run(register())
    op.open("/admin/terminals", "terminals")
    rows = op.table_rows()
    assert any("browser bar" in r and "Lemon Bar" in r for r in rows), rows
    assert any("browser desk" in r and "Top-up Desk" in r for r in rows), rows

    # ---- the dashboard is open while the tag is topped up and the product sold: its revenue changes live
    op.open("/admin/")
    before = op.text("#revenue-today")
    assert "0.00" in before, before

    async def sell() -> int:
        async with Terminal.open(tmp_path / "desk") as desk, Terminal.open(tmp_path / "bar") as bar:
            topup = await desk.topup(tag, 2000, "cash")
            assert topup.state is State.COMMITTED and topup.balance == 2000, topup
            sale = await bar.buy(tag, [f"{PRODUCT}:2"])
            assert sale.state is State.COMMITTED and sale.online and sale.amount == 2 * PRICE, sale
            rep = await bar.replicate(deadline_s=10)
            assert (rep.booked, rep.remaining) == (1, 0), rep
            return sale.transaction_id

    sale_id = run(sell())
    sale = one(owner, "SELECT state::text, amount FROM ledger.transaction WHERE id = %s", (sale_id,))
    assert sale == {"state": "Committed", "amount": 760}
    invariants(owner)
    op.wait(lambda drv: "7.60" in drv.find_element(By.ID, "revenue-today").text,
            "the dashboard's revenue today to show the sale (live, without a reload)")
    status = op.text("#live-status")
    assert status.startswith("live"), status
    # its time is the event's (not the browser's zone), in the page's locale (en: 2:13:04 AM)
    now = datetime.now(timezone.utc)
    clocks = {(now + timedelta(seconds=s)).astimezone(event_zone).strftime("%-I:%M") for s in range(-90, 15)}
    assert any(f"live · {c}:" in status for c in clocks), (status, sorted(clocks))
    op.shot("dashboard")

    # ---- the sale in the transactions list, and its detail page
    op.open("/admin/transactions", "transactions")
    rows = op.table_rows()
    assert any(r.split()[0] == str(sale_id) and "purchase" in r and "Committed" in r and "7.60" in r
               for r in rows), rows
    op.open(f"/admin/transactions?type=purchase&uid={UID}")
    assert [r.split()[0] for r in op.table_rows()] == [str(sale_id)], op.table_rows()
    op.follow(lambda: d.find_element(By.LINK_TEXT, str(sale_id)), "the transaction page")
    assert d.current_url.endswith(f"/admin/transactions/{sale_id}"), d.current_url
    body = op.text("main")
    assert PRODUCT in body and "7.60" in body, body
    facts = op.text("dl.facts")
    for label in ("Type", "State", "Amount", "Fee", "Tag", "Merchant", "Position", "Terminal", "Created",
                  "Committed"):
        assert label in facts, (label, facts)
    assert "Lemon Stand" in facts and "browser bar" in facts and UID in facts, facts
    op.shot("transaction")

    # ---- a bar crashes mid-sale (before writing the tag): TerminalConfirmUnknown, decided in the queue
    async def crash() -> int:
        bar = Terminal.open(tmp_path / "bar")
        with pytest.raises(SimulatedCrash) as crashed:
            await bar.buy(tag, [f"{PRODUCT}:1"], crash="before-write")  # type: ignore[arg-type]
        await bar.close()
        async with Terminal.open(tmp_path / "bar") as reopened:
            rep = await reopened.replicate(deadline_s=10)
            assert rep.results and rep.results[0]["state"] == "TerminalConfirmUnknown", rep
            assert rep.results[0]["terminal_tx_number"] == crashed.value.terminal_tx_number
            return rep.results[0]["transaction_id"]

    unknown_id = run(crash())
    assert one(owner, "SELECT state::text, held FROM ledger.transaction WHERE id = %s", (unknown_id,)) == {
        "state": "TerminalConfirmUnknown", "held": PRICE}
    op.open("/admin/queue")
    form_id = f"resolve-terminal-confirm-unknown-{unknown_id}-"
    assert d.find_elements(By.ID, f"{form_id}-outcome"), op.table_rows()
    op.shot("queue")
    op.fill_and_submit({f"{form_id}-outcome": "Aborted", f"{form_id}-reason": "the tag shows no such charge"})
    assert not d.find_elements(By.ID, f"{form_id}-outcome"), "the decided item is gone from the queue"
    assert one(owner, "SELECT state::text, held FROM ledger.transaction WHERE id = %s", (unknown_id,)) == {
        "state": "Aborted", "held": 0}
    invariants(owner)

    # ---- find the tag, block it; the bar then refuses it
    op.open(f"/admin/customers?q={UID[:6]}")
    assert any(UID in r for r in op.table_rows()), op.table_rows()
    op.shot("customers")
    op.follow(lambda: d.find_element(By.LINK_TEXT, UID), "the tag's page")
    assert UID in d.current_url, d.current_url
    assert "active" in op.text("h1") and "12.40" in op.text(".tiles"), (op.text("h1"), op.text(".tiles"))
    assert PRODUCT in d.find_element(By.TAG_NAME, "main").text
    op.fill_and_submit({"block-reason": "lost wristband, reported at the info point"})
    assert "blocked" in op.text("h1"), op.text("h1")
    op.shot("customer")
    assert one(owner, "SELECT status::text FROM ledger.tag WHERE event_id = %s AND uid = %s",
               (event_id, UID)) == {"status": "blocked"}

    async def refused() -> None:
        async with Terminal.open(tmp_path / "bar") as bar:
            result = await bar.buy(tag, [f"{PRODUCT}:1"])
            assert result.state is State.ABORTED and result.problem == "tag-blocked", result

    run(refused())
    invariants(owner)

    # ---- reports: every one renders; sales per product downloaded as CSV
    op.open("/admin/reports", "reports")
    names = ("sales-per-merchant", "sales-per-product", "sales-per-hour", "vat", "topups", "trial-balance",
             "settlement")
    for name in names:
        op.open(f"/admin/reports/{name}", f"report-{name}")
    op.open("/admin/reports/sales-per-product")
    csv_file = op.download(d.find_element(By.PARTIAL_LINK_TEXT, "CSV"), ".csv")
    table = list(csv.reader(io.StringIO(csv_file.read_text(encoding="utf-8-sig"))))
    lemonade = [row for row in table[1:] if PRODUCT in row]
    assert len(lemonade) == 1, table
    assert any(cell.replace(",", ".") in ("7.60", "760") for cell in lemonade[0]), lemonade
    assert any(cell == "2" for cell in lemonade[0]), lemonade

    # ---- fiscal: close both tills, export DSFinV-K, download the zip
    op.open("/admin/fiscal", "fiscal")
    for assignment in (bar_id, desk_id):
        op.open("/admin/fiscal")
        op.submit(lambda a=assignment: d.find_element(
            By.CSS_SELECTOR, f"form input[name=assignment_id][value='{a}']").find_element(By.XPATH, "./ancestor::form"))
        # a page asks first (no JavaScript); nothing is closed until it is confirmed
        assert "Close a till" in op.text("h1"), op.text("main")
        assert owner.execute("SELECT count(*) FROM ledger.cashpoint_closing WHERE assignment_id = %s",
                             (assignment,)).fetchone()[0] == 0
        if assignment == bar_id:
            op.shot("fiscal-close-confirm")
        op.submit(lambda: d.find_element(By.ID, "confirm-form"))
        assert "closed" in op.text(".note"), op.text("main")
    closed = owner.execute("SELECT count(*) FROM ledger.cashpoint_closing").fetchone()[0]
    assert closed == 2, closed
    op.open("/admin/fiscal")
    op.submit(op.form_of("export-from"))

    def export_done(drv: WebDriver) -> WebElement | None:
        failed = drv.find_elements(By.CSS_SELECTOR, "#export-status.form-error")
        assert not failed, failed[0].text
        return (drv.find_elements(By.ID, "export-download") or [None])[0]

    try:
        link = op.wait(export_done, "the DSFinV-K export to finish", timeout=60)
    finally:
        op.shot("fiscal-export")
    zip_file = op.download(link, ".zip")
    with zipfile.ZipFile(zip_file) as z:
        files = {Path(n).name: n for n in z.namelist()}
        for required in ("index.xml", "transactions.csv", "lines.csv", "cashpointclosing.csv", "tse.csv",
                         "location.csv"):
            assert required in files, sorted(files)
        lines = z.read(files["lines.csv"]).decode("utf-8")
        transactions = z.read(files["transactions.csv"]).decode("utf-8")
        location = z.read(files["location.csv"]).decode("utf-8")
    assert PRODUCT in lines and "3,80" in lines, lines[:2000]           # the sale's line, as sold
    assert "7,60" in transactions and "20,00" in transactions, transactions[:2000]   # the sale and the top-up
    assert "Musterstadt" in location and "12345" in location, location  # the seller, as the DBA set it

    # ---- the remaining pages: tags, users, audit (every change above is there), password
    op.open("/admin/tags", "tags")
    op.open("/admin/users", "users")
    assert any(OPERATOR in r for r in op.table_rows())
    op.open("/admin/audit", "audit")
    audit = d.find_element(By.TAG_NAME, "main").text
    for change in ("Lemon Stand", PRODUCT, UID):
        assert change in audit, (change, audit[:3000])
    op.open("/admin/password", "password")

    # ---- a phone (390 CSS pixels wide): no page scrolls sideways; wide tables scroll inside their box
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    try:
        phone_pages = {"dashboard": "/admin/", "transactions": "/admin/transactions",
                       "transaction": f"/admin/transactions/{sale_id}", "customer": f"/admin/customers/{UID}",
                       "event": "/admin/event", "merchants": "/admin/merchants", "positions": "/admin/positions",
                       "products": "/admin/products", "terminals": "/admin/terminals", "tags": "/admin/tags",
                       "queue": "/admin/queue", "report": "/admin/reports/sales-per-product",
                       "chart": "/admin/reports/sales-per-hour", "fiscal": "/admin/fiscal", "users": "/admin/users",
                       "audit": "/admin/audit"}
        wide = {}
        for name, path in phone_pages.items():
            op.open(path)
            assert d.execute_script("return window.innerWidth;") == 390
            if op.overflow() > 0:
                wide[name] = op.overflow()
            if name in ("dashboard", "transaction", "customer", "products", "fiscal"):
                op.shot(f"phone-{name}")
        assert not wide, f"pages wider than a 390 px phone (px too wide): {wide}"
    finally:
        d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # ---- sign out: the session is revoked, the cookie's token no longer opens a page
    op.open("/admin/logout", "logout")
    op.submit(lambda: d.find_element(By.CSS_SELECTOR, "main form"))
    assert d.find_elements(By.ID, "username"), "signed out: the sign-in page"
    assert owner.execute("SELECT count(*) FROM ledger.admin_session WHERE revoked_at IS NULL").fetchone()[0] == 0
    op.driver.get(site.base_url + "/admin/transactions")
    assert d.find_elements(By.ID, "username"), "signed out: the sign-in form again"
    invariants(owner)
    assert len(op.shots) >= 20, op.shots
