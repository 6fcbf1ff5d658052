"""DSFinV-K export (SPEC §8): cash-point closings and the zip of CSV tables read back.

Real PostgreSQL (conftest cluster, a database of its own, superuser): an event with a bar, two top-up desks and the backend; purchases at 19 %, 7 % and
a returnable 0 % item, cash and card top-ups, a cash refund, a deposit return and a bank payout, all through api
functions; the tills are closed (api.close_cashpoint) and exported.  The export's totals per VAT rate and per payment
type must equal the ledger's; every table is present and described in index.xml; CRLF, ``,`` decimals, Z_NR as closed.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from python_gateway import cli, dsfinvk
from python_gateway.tse.software import SoftwareTSE
from tests.conftest import migrated_database
from tests.gateway_server import scalar
from tests.test_receipts import sign_like_the_relay

REQUIRED = ["transactions", "transactions_vat", "lines", "lines_vat", "transactions_tse", "datapayment",
            "businesscases", "payment", "cash_per_currency", "cashpointclosing", "cashregister", "location", "vat",
            "tse"]
DBNAME = "festpay_dsfinvk"
MONEY = re.compile(r"^-?\d+,\d{2}$")


@pytest.fixture(scope="module")
def dsfinvk_url(pg_cluster) -> Any:
    """A database of its own: the receipts left waiting for the TSE here must not reach other tests' relays."""
    with migrated_database(pg_cluster, DBNAME) as url:
        yield url


@pytest.fixture(scope="module")
def conn(dsfinvk_url: str):
    with psycopg.connect(dsfinvk_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def ledger(conn: psycopg.Connection, tmp_path_factory) -> dict[str, Any]:
    """The event and its bookings; the bar's first receipts signed by a software TSE; the first round of every
    till closed, one sale left open."""
    name = f"DSFinV-K test {secrets.token_hex(4)}"
    e = scalar(conn, "SELECT api.create_event(%s, 'EUR', 50000, 500, 25000, p_topup_fee_card => 50)", (name,))
    conn.execute("SELECT api.set_seller(%s, 'DSFinV-K Test GmbH', 'Festwiese 1', '12345', 'Musterstadt', "
                 "'12/345/67890', 'DE123456789')", (e,))
    merchant = scalar(conn, "SELECT api.create_merchant(%s, 'Bar')", (e,))
    conn.execute("SELECT api.create_position(%s, 'Bar', 'sale', %s)", (e, merchant))
    conn.execute("SELECT api.create_position(%s, 'Top-up', 'topup')", (e,))
    products = {
        "Beer": scalar(conn, "SELECT api.create_product(%s, 'Beer', 450, 19)", (e,)),
        "Pretzel": scalar(conn, "SELECT api.create_product(%s, 'Pretzel', 350, 7)", (e,)),
        "Cup": scalar(conn, "SELECT api.create_product(%s, 'Cup', 200, 0, p_returnable => true)", (e,)),
    }

    def terminal(position: str) -> int:
        return scalar(conn, "SELECT assignment_id FROM api.register_terminal(api.create_registration_code(%s, %s), "
                            "'dsfinvk test')", (e, position))

    bar, desk1, desk2 = terminal("Bar"), terminal("Top-up"), terminal("Top-up")
    items = lambda **q: Jsonb([{"product_id": products[k], "quantity": n} for k, n in q.items()])  # noqa: E731
    tag_no: dict[str, int] = defaultdict(int)

    def sale(number: int, uid: str, **q: int) -> None:
        amount = sum({"Beer": 450, "Pretzel": 350, "Cup": 200}[k] * n for k, n in q.items())
        conn.execute("SELECT api.reserve(%s, %s, %s, %s, %s, %s)", (bar, number, uid, tag_no[uid], amount, items(**q)))
        tag_no[uid] += 1
        outcome = scalar(conn, "SELECT outcome FROM api.replicate(%s, %s)", (bar, Jsonb([{
            "terminal_tx_number": number, "state": "Committed", "uid": uid, "amount": amount}])))
        assert outcome == "booked"

    conn.execute("SELECT api.topup(%s, 1, 'D5F10001', 10000, 'cash')", (desk1,))
    conn.execute("SELECT api.topup(%s, 1, 'D5F10002', 5000, 'card')", (desk2,))
    conn.execute("SELECT api.topup(%s, 2, 'D5F10002', 3000, 'card')", (desk1,))
    sale(1, "D5F10001", Beer=2, Pretzel=1, Cup=2)
    sale(2, "D5F10002", Beer=1, Cup=1)
    conn.execute("SELECT api.deposit_return(%s, 3, 'D5F10001', %s)", (bar, items(Cup=1)))
    conn.execute("SELECT api.refund(%s, 3, 'D5F10001', 500)", (desk1,))
    conn.execute("SELECT api.payout(%s, 'D5F10002', 2000)", (e,))
    signed = []
    with SoftwareTSE(tmp_path_factory.mktemp("tse")) as tse:
        for (request,) in conn.execute(
                "SELECT o.id FROM ledger.outbox o JOIN ledger.transaction t ON t.id = o.transaction_id "
                "WHERE o.topic = 'tse' AND t.assignment_id = %s AND t.type = 'purchase' ORDER BY o.id",
                (bar,)).fetchall():
            signed.append(sign_like_the_relay(conn, tse, request))
    assert len(signed) == 2  # the deposit return stays unsigned (as if the TSE had failed)
    closed = {}
    for till in (bar, desk1, desk2, None):
        closed[till] = [scalar(conn, "SELECT z_nr FROM api.close_cashpoint(%s, %s)", (e, till))]
    sale(4, "D5F10001", Pretzel=3)
    closed[bar].append(scalar(conn, "SELECT z_nr FROM api.close_cashpoint(%s, %s)", (e, bar)))
    sale(5, "D5F10001", Beer=1)  # left open: not exported until closed
    return {"event": e, "name": name, "bar": bar, "desk1": desk1, "desk2": desk2, "closed": closed, "signed": signed}


def read_zip(path: Path) -> tuple[dict[str, list[dict[str, str]]], dict[str, bytes], zipfile.ZipFile]:
    zf = zipfile.ZipFile(path)
    raw = {n: zf.read(n) for n in zf.namelist()}
    tables = {}
    for n, data in raw.items():
        if n.endswith(".csv"):
            text = data.decode("utf-8")
            tables[n[:-4]] = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";", quotechar='"'))
    return tables, raw, zf


def cents(text: str) -> int:
    assert MONEY.match(text), text
    sign = -1 if text.startswith("-") else 1
    whole, frac = text.lstrip("-").split(",")
    return sign * (int(whole) * 100 + int(frac))


def ledger_per_rate(conn: psycopg.Connection, e: int, closed_only: bool = True) -> dict[int, int]:
    """The ledger's gross per DSFinV-K VAT key, till's side: items of sales (+) and deposit returns (-); money
    without items (top-ups +, refunds and payouts -) not taxable (key 5), except top-up and payout fees, a service at
    19 % (key 1)."""
    keys = {19: 1, 7: 2, 0: 5}
    out: dict[int, int] = defaultdict(int)
    cond = ("AND EXISTS (SELECT FROM ledger.cashpoint_closing_transaction c WHERE c.transaction_id = t.id)"
            if closed_only else "")
    for rate, gross in conn.execute(f"""
            SELECT i.vat_rate, sum(CASE WHEN t.type = 'purchase' THEN 1 ELSE -1 END * i.quantity * i.unit_price)
              FROM ledger.item i JOIN ledger.transaction t ON t.id = i.transaction_id
             WHERE t.event_id = %s AND t.state = 'Committed' {cond} GROUP BY 1""", (e,)):
        out[keys[int(rate)]] += int(gross)
    for gross, fees in conn.execute(f"""
            SELECT sum(CASE WHEN t.type = 'topup' THEN t.amount - t.fee ELSE -t.amount END), sum(t.fee)
              FROM ledger.transaction t
             WHERE t.event_id = %s AND t.state = 'Committed' AND t.type IN ('topup', 'refund', 'payout') {cond}""",
                                     (e,)):
        out[5] += int(gross)
        out[1] += int(fees)
    return dict(out)


def ledger_per_payment(conn: psycopg.Connection, e: int) -> dict[str, int]:
    """The ledger's money per payment name: top-ups by method, cash refunds, bank payouts, and credit spent."""
    rows = conn.execute("""
        SELECT t.type::text, t.payment::text, sum(t.amount) FROM ledger.transaction t
         WHERE t.event_id = %s AND t.state = 'Committed'
           AND EXISTS (SELECT FROM ledger.cashpoint_closing_transaction c WHERE c.transaction_id = t.id)
         GROUP BY 1, 2""", (e,)).fetchall()
    got: dict[str, int] = defaultdict(int)
    for typ, payment, amount in rows:
        if typ == "topup":
            got[{"cash": "Bar", "card": "Karte"}[payment]] += amount
        elif typ == "refund":
            got["Bar"] -= amount
        elif typ == "payout":
            got["Ueberweisung"] -= amount
        elif typ == "purchase":
            got["Mehrzweckgutschein"] += amount
        elif typ == "deposit_return":
            got["Mehrzweckgutschein"] -= amount
    return dict(got)


@pytest.fixture(scope="module")
def exported(conn: psycopg.Connection, ledger: dict[str, Any], tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dsfinvk") / "export.zip"
    lines: list[str] = []
    result = dsfinvk.export(conn, ledger["event"], out, progress=lines.append, every=5)
    assert result.closings == 5 and lines, (result, lines)  # bar Z 1 and 2, two desks, backend; progress shown
    return out


def test_every_table_present_and_described(exported: Path) -> None:
    tables, raw, _ = read_zip(exported)
    for name in REQUIRED:
        assert f"{name}.csv" in raw, name
    assert dsfinvk.DTD_NAME in raw and b"<!ELEMENT DataSet" in raw[dsfinvk.DTD_NAME]
    index = raw["index.xml"].decode("utf-8")
    assert f'<!DOCTYPE DataSet SYSTEM "{dsfinvk.DTD_NAME}">' in index
    root = ET.fromstring(raw["index.xml"])
    described = {t.findtext("URL"): t for t in root.iter("Table")}
    assert set(described) == {n for n in raw if n.endswith(".csv")}
    for url, table in described.items():
        header = raw[url].decode("utf-8").split("\r\n", 1)[0].split(";")
        columns = [c.findtext("Name") for c in table.find("VariableLength")
                   if c.tag in ("VariablePrimaryKey", "VariableColumn")]
        assert columns == header, url
        assert table.find("UTF8") is not None and table.findtext("DecimalSymbol") == ","
        assert table.find("VariableLength").findtext("ColumnDelimiter") == ";"


def _dtd_models(dtd: bytes) -> dict[str, Any]:
    """The element declarations of a DTD as expat reports them (name -> content model)."""
    import xml.parsers.expat as expat

    models: dict[str, Any] = {}
    doc = expat.ParserCreate()
    doc.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_ALWAYS)

    def external(context, base, system_id, public_id):
        sub = doc.ExternalEntityParserCreate(context)
        sub.ElementDeclHandler = lambda name, model: models.__setitem__(name, model)
        sub.Parse(dtd, True)
        return 1

    doc.ExternalEntityRefHandler = external
    doc.Parse(b'<?xml version="1.0"?><!DOCTYPE DataSet SYSTEM "x.dtd"><DataSet/>', True)
    return models


def _model_regex(model: Any) -> str:
    """A regular expression over 'Name ' tokens for an expat content model."""
    ctype, quant, name, children = model
    if ctype == 4:  # NAME
        body = f"(?:{re.escape(name)} )"
    elif ctype in (5, 6):  # CHOICE, SEQ
        parts = [_model_regex(c) for c in children]
        body = "(?:" + ("|" if ctype == 5 else "").join(parts) + ")"
    elif ctype == 3:  # MIXED (#PCDATA)
        body = "(?:)"
    else:  # EMPTY
        body = "(?:)"
    return body + {0: "", 1: "?", 2: "*", 3: "+"}[quant]


def test_index_xml_is_valid_against_the_dtd(exported: Path) -> None:
    _, raw, _ = read_zip(exported)
    models = _dtd_models(raw[dsfinvk.DTD_NAME])
    assert {"DataSet", "Table", "VariableLength", "VariableColumn", "UTF8", "Numeric", "Accuracy"} <= set(models)
    for element in ET.fromstring(raw["index.xml"]).iter():
        assert element.tag in models, element.tag
        children = "".join(c.tag + " " for c in element)
        ctype = models[element.tag][0]
        if ctype == 1:  # EMPTY
            assert not children and not (element.text or "").strip(), element.tag
        elif ctype == 3:  # (#PCDATA)
            assert not children, element.tag
        else:
            assert re.fullmatch(_model_regex(models[element.tag]), children), (element.tag, children)


def test_csv_format(exported: Path) -> None:
    tables, raw, _ = read_zip(exported)
    for name, data in raw.items():
        if not name.endswith(".csv"):
            continue
        text = data.decode("utf-8")
        assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", ""), name
    # Money with a decimal comma; text quoted, numbers bare.
    for row in tables["lines_vat"]:
        for col in ("POS_BRUTTO", "POS_NETTO", "POS_UST"):
            assert MONEY.match(row[col]), row
    first_line = raw["transactions.csv"].decode("utf-8").split("\r\n")[1]
    assert first_line.startswith('"festpay-') and re.search(r";-?\d+,\d{2};", first_line), first_line
    assert {r["UST_SATZ"] for r in tables["vat"]} == {"19,00", "7,00", "10,70", "5,50", "0,00"}


def test_totals_per_vat_rate_equal_the_ledgers(conn, ledger, exported: Path) -> None:
    tables, _, _ = read_zip(exported)
    expected = ledger_per_rate(conn, ledger["event"])
    # closed sales as booked, and the fees of two card top-ups (50 each) at 19 %
    assert expected[1] == 3 * 450 + 2 * 50 and expected[2] == 350 + 3 * 350 and expected[5] != 0
    for table, col in (("lines_vat", "POS_BRUTTO"), ("transactions_vat", "BON_BRUTTO"),
                       ("businesscases", "Z_UMS_BRUTTO")):
        got: dict[int, int] = defaultdict(int)
        for row in tables[table]:
            got[int(row["UST_SCHLUESSEL"])] += cents(row[col])
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}, table
    # Net + tax = gross, and 19 % / 7 % tax as on the receipt.
    for row in tables["transactions_vat"]:
        assert cents(row["BON_NETTO"]) + cents(row["BON_UST"]) == cents(row["BON_BRUTTO"])
    tax19 = sum(cents(r["POS_UST"]) for r in tables["lines_vat"] if r["UST_SCHLUESSEL"] == "1")
    # two beers on one receipt, one on another, and two top-up fees of 50
    assert tax19 == round(900 * 19 / 119) + round(450 * 19 / 119) + 2 * round(50 * 19 / 119)
    # Business cases per SPEC 8.
    cases = {(r["GV_TYP"], r["GV_NAME"].split(",")[0]) for r in tables["lines"]}
    assert ("MehrzweckgutscheinKauf", "Aufladung Guthaben (Mehrzweckgutschein)") in cases
    assert ("Umsatz", "MehrzweckgutscheinEinloesung") in cases and ("Pfand", "MehrzweckgutscheinEinloesung") in cases
    assert ("PfandRueckzahlung", "MehrzweckgutscheinEinloesung") in cases
    assert {t for t, _ in cases} == {"MehrzweckgutscheinKauf", "Umsatz", "Pfand", "PfandRueckzahlung", "Auszahlung"}


def test_totals_per_payment_type_equal_the_ledgers(conn, ledger, exported: Path) -> None:
    tables, _, _ = read_zip(exported)
    expected = ledger_per_payment(conn, ledger["event"])
    assert expected["Bar"] == 10000 - 500 and expected["Karte"] == 8000
    for table, col in (("datapayment", "BASISWAEH_BETRAG"), ("payment", "Z_ZAHLART_BETRAG")):
        got: dict[str, int] = defaultdict(int)
        for row in tables[table]:
            got[row["ZAHLART_NAME"]] += cents(row[col])
            assert row["ZAHLART_TYP"] == ("Bar" if row["ZAHLART_NAME"] == "Bar" else "Unbar")
        assert dict(got) == expected, table
    cash = sum(cents(r["ZAHLART_BETRAG_WAEH"]) for r in tables["cash_per_currency"])
    assert cash == expected["Bar"]
    receipts = sum(cents(r["UMS_BRUTTO"]) for r in tables["transactions"])
    assert receipts == sum(expected.values())


def test_closings_as_closed(conn, ledger, exported: Path) -> None:
    tables, _, _ = read_zip(exported)
    z = defaultdict(list)
    for row in tables["cashpointclosing"]:
        z[row["Z_KASSE_ID"]].append(int(row["Z_NR"]))
    bar = f"festpay-{ledger['bar']}"
    assert sorted(z[bar]) == [1, 2] and z[f"festpay-{ledger['desk1']}"] == [1] and z[f"festpay-{ledger['desk2']}"] == [1]
    assert "festpay-backend" in z  # the bank payout
    # Every exported receipt once, under its closing; the open sale is not exported.
    ids = [int(r["BON_ID"]) for r in tables["transactions"]]
    assert len(ids) == len(set(ids))
    open_sale = scalar(conn, "SELECT id FROM ledger.transaction WHERE assignment_id = %s AND terminal_tx_number = 5",
                       (ledger["bar"],))
    assert open_sale not in ids
    closing_of = {int(r["BON_ID"]): (r["Z_KASSE_ID"], int(r["Z_NR"])) for r in tables["transactions"]}
    for tx, (client, z_nr) in closing_of.items():
        assert (client, z_nr) == tuple(conn.execute(
            "SELECT c.client_id, c.z_nr FROM ledger.cashpoint_closing_transaction l "
            "JOIN ledger.cashpoint_closing c ON c.id = l.closing_id WHERE l.transaction_id = %s", (tx,)).fetchone())
    assert len(tables["transactions_tse"]) == len(ids)


def test_tse_data_of_signed_receipts(conn, ledger, exported: Path) -> None:
    tables, _, _ = read_zip(exported)
    bar = f"festpay-{ledger['bar']}"
    signed = [r for r in tables["transactions_tse"] if r["TSE_TA_SIG"]]
    assert len(signed) == 2 and all(r["Z_KASSE_ID"] == bar and r["Z_NR"] == "1" and r["TSE_ID"] == "1" for r in signed)
    stored = {int(r[0]): r[1:] for r in conn.execute(
        "SELECT transaction_id, process_data, signature_counter::text FROM ledger.tse_signature s "
        "JOIN ledger.transaction t ON t.id = s.transaction_id WHERE t.assignment_id = %s", (ledger["bar"],))}
    for row in signed:
        assert (row["TSE_TA_VORGANGSDATEN"], row["TSE_TA_SIGZ"]) == stored[int(row["BON_ID"])]
        assert row["TSE_TA_VORGANGSART"] == "Kassenbeleg-V1" and row["TSE_TA_FEHLER"] == ""
    tse_rows = tables["tse"]
    assert [(r["Z_KASSE_ID"], r["Z_NR"], r["TSE_ID"]) for r in tse_rows] == [(bar, "1", "1")]
    assert tse_rows[0]["TSE_SERIAL"] == ledger["signed"][0].serial_number.hex() or len(tse_rows[0]["TSE_SERIAL"]) == 64
    unsigned = [r for r in tables["transactions_tse"] if not r["TSE_TA_SIG"]]
    assert unsigned and all(r["TSE_TA_FEHLER"] for r in unsigned)


def test_cli_closes_open_tills_and_exports(conn, ledger, dsfinvk_url: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.zip"
    before = scalar(conn, "SELECT count(*) FROM ledger.cashpoint_closing WHERE event_id = %s", (ledger["event"],))
    assert cli.main(["export", "dsfinvk", "--event", ledger["name"], "--close", "--out", str(out),
                     "--database-url", dsfinvk_url]) == 0
    err = capsys.readouterr().err
    assert f"closed festpay-{ledger['bar']}: Z_NR 3, 1 receipts" in err
    assert scalar(conn, "SELECT count(*) FROM ledger.cashpoint_closing WHERE event_id = %s", (ledger["event"],)) == before + 1
    tables, _, _ = read_zip(out)
    assert sorted(int(r["Z_NR"]) for r in tables["cashpointclosing"] if r["Z_KASSE_ID"] == f"festpay-{ledger['bar']}") == [1, 2, 3]
    expected = ledger_per_rate(conn, ledger["event"], closed_only=False)
    got: dict[int, int] = defaultdict(int)
    for row in tables["lines_vat"]:
        got[int(row["UST_SCHLUESSEL"])] += cents(row["POS_BRUTTO"])
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.items() if v}
    # Nothing in a range without closings: exit 1, still a valid (empty) zip.
    assert cli.main(["export", "dsfinvk", "--event", str(ledger["event"]), "--to", "2000-01-01", "--out",
                     str(tmp_path / "none.zip"), "--database-url", dsfinvk_url]) == 1
    assert zipfile.ZipFile(tmp_path / "none.zip").namelist()


def test_two_closings_of_one_till_at_once_close_each_receipt_once(conn, ledger, dsfinvk_url: str) -> None:
    import threading

    bar, e = ledger["bar"], ledger["event"]
    amount = 450
    conn.execute("SELECT api.reserve(%s, 6, 'D5F10001', 5, %s, %s)", (bar, amount, Jsonb([{
        "product_id": scalar(conn, "SELECT id FROM ledger.product WHERE event_id = %s AND name = 'Beer'", (e,)),
        "quantity": 1}])))
    assert scalar(conn, "SELECT outcome FROM api.replicate(%s, %s)", (bar, Jsonb([{
        "terminal_tx_number": 6, "state": "Committed", "uid": "D5F10001", "amount": amount}]))) == "booked"
    results: list[Any] = []
    with psycopg.connect(dsfinvk_url) as first, psycopg.connect(dsfinvk_url, autocommit=True) as second:
        z_first = scalar(first, "SELECT z_nr FROM api.close_cashpoint(%s, %s)", (e, bar))  # holds the till's lock

        def close_again() -> None:
            try:
                results.append(scalar(second, "SELECT z_nr FROM api.close_cashpoint(%s, %s)", (e, bar)))
            except psycopg.Error as err:
                results.append(err.sqlstate)

        thread = threading.Thread(target=close_again)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second closing waits for the first"
        first.commit()
        thread.join(10)
    assert results == ["FP001"], results  # nothing left open: validation
    assert z_first == 4
    assert scalar(conn, "SELECT count(*) FROM ledger.cashpoint_closing WHERE client_id = %s", (f"festpay-{bar}",)) == 4


def test_admin_sites_export_is_the_dbas(conn, ledger, dsfinvk_url: str, tmp_path: Path) -> None:
    """The admin site exports through api.admin_dsfinvk_* as festpay_web with a finance session: the same zip; a
    session without the finance privilege, or none, gets nothing."""
    tokens = {}
    for role in ("finance", "viewer"):
        name = f"{role}-{secrets.token_hex(3)}"
        conn.execute("SELECT api.create_admin_user(%s, %s, 'a long enough password')", (name, role))
        outcome, tokens[role] = conn.execute("SELECT outcome, token FROM api.admin_sign_in(%s, 'a long enough password')",
                                             (name,)).fetchone()
        assert outcome == "ok"
    with psycopg.connect(cli.acting_as(dsfinvk_url, "festpay_web"), autocommit=True) as web:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            dsfinvk.export(web, ledger["event"], tmp_path / "dba.zip")              # the DBA's functions: refused
        result = dsfinvk.export(web, ledger["event"], tmp_path / "web.zip", token=tokens["finance"])
        for token, sqlstate in ((tokens["viewer"], "FP071"), ("not a session", "FP070")):
            with pytest.raises(psycopg.Error) as refused:
                dsfinvk.export(web, ledger["event"], tmp_path / "refused.zip", token=token)
            assert refused.value.sqlstate == sqlstate
    assert not (tmp_path / "refused.zip").exists() and not (tmp_path / "dba.zip").exists()
    dba = dsfinvk.export(conn, ledger["event"], tmp_path / "dba-now.zip")
    assert result.closings == dba.closings >= 5
    assert read_zip(tmp_path / "web.zip")[1] == read_zip(tmp_path / "dba-now.zip")[1]
