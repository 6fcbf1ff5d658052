"""DSFinV-K export (issue 4 part 6, SPEC §8): ``festpay export dsfinvk --event ID|NAME [--from DATE --to DATE]
[--close] --out FILE.zip``.

Writes a zip with the DSFinV-K CSV tables, ``index.xml`` (GDPdU description of every table) and the GDPdU DTD
``gdpdu-01-09-2004.dtd``.  The CSV files are UTF-8, ``;`` separated, CRLF line ends, ``,`` as decimal separator,
text in double quotes (numbers bare), a header line with the DSFinV-K column names first.

Presentation only: which receipts a cash-point closing (Kassenabschluss) covers, its Z number, every amount, the
business case of every line and its gross, net and tax come from the database (``api.close_cashpoint``,
``api.dsfinvk_lines``, ``api.dsfinvk_receipts``, ``procedures/60_closing.sql``); this module sums them per receipt,
closing and business case and formats them.  Only closed receipts are exported, organised per closing
(``Z_KASSE_ID`` = the till's TSE client id, ``Z_ERSTELLUNG`` = when it was closed, ``Z_NR``); ``--close`` closes
every till with open receipts first.  ``--from``/``--to`` select closings by their date in the event's time zone.

Business cases (GV_TYP / GV_NAME of ``lines.csv``; amounts from the till's side, money in positive):

=====================  ==========================  =================================================  ===========
Festpay transaction    GV_TYP                      GV_NAME                                            USt-Schl.
=====================  ==========================  =================================================  ===========
topup (cash/card)      MehrzweckgutscheinKauf      Aufladung Guthaben (Mehrzweckgutschein), <method>  5 (0 %)
purchase, item         Umsatz (one line per item)  MehrzweckgutscheinEinloesung (paid with credit)    by rate
purchase, returnable   Pfand                       MehrzweckgutscheinEinloesung                       by rate
deposit_return         PfandRueckzahlung (neg.)    MehrzweckgutscheinEinloesung (back onto credit)    by rate
chargeback             Umsatz (negative)           Rueckbuchung (Gutschrift auf Mehrzweckgutschein)   5 (0 %)
refund (cash at desk)  Auszahlung (negative)       Auszahlung Restguthaben Mehrzweckgutschein (Bar)   5 (0 %)
payout (bank)          Auszahlung (negative)       Auszahlung Restguthaben ... (Ueberweisung)         5 (0 %)
=====================  ==========================  =================================================  ===========

A sale paid with credit is the redemption of a multi-purpose voucher: its lines are the goods at their VAT rates
(``Umsatz``/``Pfand``, which carry the tax), the business-case name says ``MehrzweckgutscheinEinloesung`` and the
payment (``datapayment.csv``) is ``Unbar`` / ``Mehrzweckgutschein``.  Top-ups sell the voucher, not taxable
(USt-Schluessel 5); the top-up fee stays inside the top-up amount, as in the signed process data.  Payment names:
cash ``Bar``/``Bar``, card ``Unbar``/``Karte``, online top-up ``Unbar``/``Online``, payout ``Unbar``/``Ueberweisung``,
credit ``Unbar``/``Mehrzweckgutschein``.  VAT keys (``vat.csv``): 1 = 19 %, 2 = 7 %, 3 = 10,7 %, 4 = 5,5 %,
5 = 0 % (nicht steuerbar).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import psycopg

from .tse.audit import money
from .tse.logmessage import format_qr_time

DTD_NAME = "gdpdu-01-09-2004.dtd"
TAXONOMY_VERSION = "2.3"
PROGRESS_EVERY = 10_000

# Column kinds: text (quoted), int (whole number), money (cents -> 2 decimals), qty (3 decimals), rate (2 decimals).
TEXT, INT, MONEY, QTY, RATE = "text", "int", "money", "qty", "rate"

Z = [("Z_KASSE_ID", TEXT), ("Z_ERSTELLUNG", TEXT), ("Z_NR", INT)]
BON = Z + [("BON_ID", TEXT)]


@dataclass(frozen=True)
class Table:
    file: str
    name: str
    description: str
    columns: list[tuple[str, str]]
    keys: int  # the first `keys` columns are the primary key
    foreign: str | None = "Stamm_Abschluss"  # references the closing (Z_KASSE_ID, Z_ERSTELLUNG, Z_NR)


TABLES = [
    Table("transactions.csv", "Bonkopf", "Belege (Bonkopf): ein Datensatz je Beleg", BON + [
        ("BON_NR", INT), ("BON_TYP", TEXT), ("BON_NAME", TEXT), ("TERMINAL_ID", TEXT), ("BON_STORNO", TEXT),
        ("BON_START", TEXT), ("BON_ENDE", TEXT), ("BEDIENER_ID", TEXT), ("BEDIENER_NAME", TEXT),
        ("UMS_BRUTTO", MONEY), ("KUNDE_NAME", TEXT), ("KUNDE_ID", TEXT), ("KUNDE_TYP", TEXT),
        ("KUNDE_STRASSE", TEXT), ("KUNDE_PLZ", TEXT), ("KUNDE_ORT", TEXT), ("KUNDE_LAND", TEXT),
        ("KUNDE_USTID", TEXT), ("BON_NOTIZ", TEXT)], 4),
    Table("transactions_vat.csv", "Bonkopf_USt", "Belegsummen je USt-Satz", BON + [
        ("UST_SCHLUESSEL", INT), ("BON_BRUTTO", MONEY), ("BON_NETTO", MONEY), ("BON_UST", MONEY)], 5),
    Table("allocation_groups.csv", "Bonkopf_AbrKreis", "Abrechnungskreise der Belege", BON + [
        ("ABRECHNUNGSKREIS", TEXT)], 5),
    Table("datapayment.csv", "Bonkopf_Zahlarten", "Zahlarten je Beleg", BON + [
        ("ZAHLART_TYP", TEXT), ("ZAHLART_NAME", TEXT), ("ZAHLWAEH_CODE", TEXT), ("ZAHLWAEH_BETRAG", MONEY),
        ("BASISWAEH_BETRAG", MONEY)], 6),
    Table("lines.csv", "Bonpos", "Belegpositionen mit Geschaeftsvorfall", BON + [
        ("POS_ZEILE", INT), ("GUTSCHEIN_NR", TEXT), ("ARTIKELTEXT", TEXT), ("POS_TERMINAL_ID", TEXT),
        ("GV_TYP", TEXT), ("GV_NAME", TEXT), ("INHAUS", INT), ("P_STORNO", TEXT), ("AGENTUR_ID", INT),
        ("ART_NR", TEXT), ("GTIN", TEXT), ("WARENGR_ID", TEXT), ("WARENGR", TEXT), ("MENGE", QTY),
        ("FAKTOR", QTY), ("EINHEIT", TEXT), ("STK_BR", MONEY)], 5),
    Table("lines_vat.csv", "Bonpos_USt", "Positionsbetraege je USt-Satz", BON + [
        ("POS_ZEILE", INT), ("UST_SCHLUESSEL", INT), ("POS_BRUTTO", MONEY), ("POS_NETTO", MONEY),
        ("POS_UST", MONEY)], 6),
    Table("transactions_tse.csv", "TSE_Transaktionen", "TSE-Transaktionen und Signaturen der Belege", BON + [
        ("TSE_ID", INT), ("TSE_TANR", INT), ("TSE_TA_START", TEXT), ("TSE_TA_ENDE", TEXT),
        ("TSE_TA_VORGANGSART", TEXT), ("TSE_TA_SIGZ", INT), ("TSE_TA_SIG", TEXT), ("TSE_TA_FEHLER", TEXT),
        ("TSE_TA_VORGANGSDATEN", TEXT)], 5),
    Table("businesscases.csv", "Z_GV_Typ", "Summen je Geschaeftsvorfall und USt-Satz je Kassenabschluss", Z + [
        ("GV_TYP", TEXT), ("GV_NAME", TEXT), ("AGENTUR_ID", INT), ("UST_SCHLUESSEL", INT), ("Z_UMS_BRUTTO", MONEY),
        ("Z_UMS_NETTO", MONEY), ("Z_UST", MONEY)], 7),
    Table("payment.csv", "Z_Zahlart", "Summen je Zahlart je Kassenabschluss", Z + [
        ("ZAHLART_TYP", TEXT), ("ZAHLART_NAME", TEXT), ("Z_ZAHLART_BETRAG", MONEY)], 5),
    Table("cash_per_currency.csv", "Z_Waehrungen", "Barzahlungen je Waehrung je Kassenabschluss", Z + [
        ("ZAHLART_WAEH", TEXT), ("ZAHLART_BETRAG_WAEH", MONEY)], 4),
    Table("cashpointclosing.csv", "Stamm_Abschluss", "Kassenabschluesse (Z_NR aufsteigend je Kasse)", Z + [
        ("Z_BUCHUNGSTAG", TEXT), ("TAXONOMIE_VERSION", TEXT), ("Z_START_ID", TEXT), ("Z_ENDE_ID", TEXT),
        ("NAME", TEXT), ("STRASSE", TEXT), ("PLZ", TEXT), ("ORT", TEXT), ("LAND", TEXT), ("STNR", TEXT),
        ("USTID", TEXT), ("Z_SE_ZAHLUNGEN", MONEY), ("Z_SE_BARZAHLUNGEN", MONEY)], 3, None),
    Table("location.csv", "Stamm_Orte", "Ort der Kasse", Z + [
        ("LOC_NAME", TEXT), ("LOC_STRASSE", TEXT), ("LOC_PLZ", TEXT), ("LOC_ORT", TEXT), ("LOC_LAND", TEXT),
        ("LOC_USTID", TEXT)], 3),
    Table("cashregister.csv", "Stamm_Kassen", "Kassen (Kassen-Seriennummer = TSE-Client-ID)", Z + [
        ("KASSE_SERIENNR", TEXT), ("KASSE_BRAND", TEXT), ("KASSE_MODELL", TEXT), ("KASSE_SW_BRAND", TEXT),
        ("KASSE_SW_VERSION", TEXT), ("KASSE_BASISWAEH_CODE", TEXT), ("KEINE_UST_ZUORDNUNG", TEXT)], 4),
    Table("vat.csv", "Stamm_USt", "USt-Schluessel und -Saetze", Z + [
        ("UST_SCHLUESSEL", INT), ("UST_SATZ", RATE), ("UST_BESCHR", TEXT)], 4),
    Table("tse.csv", "Stamm_TSE", "Technische Sicherheitseinrichtungen", Z + [
        ("TSE_ID", INT), ("TSE_SERIAL", TEXT), ("TSE_SIG_ALGO", TEXT), ("TSE_ZEITFORMAT", TEXT),
        ("TSE_PD_ENCODING", TEXT), ("TSE_PUBLIC_KEY", TEXT), ("TSE_ZERTIFIKAT_I", TEXT),
        ("TSE_ZERTIFIKAT_II", TEXT)], 4),
]
TABLE_BY_FILE = {t.file: t for t in TABLES}

VAT_KEYS = [(1, 1900, "Regelsteuersatz"), (2, 700, "Ermaessigter Steuersatz"), (3, 1070, "Durchschnittsatz 10,7 %"),
            (4, 550, "Durchschnittsatz 5,5 %"), (5, 0, "Nicht Steuerbar (Mehrzweckgutschein)")]

BON_NAMES = {"purchase": "Verkauf", "topup": "Aufladung (Mehrzweckgutschein)", "refund": "Auszahlung Restguthaben",
             "payout": "Auszahlung Restguthaben (Ueberweisung)", "chargeback": "Rueckbuchung",
             "deposit_return": "Pfandrueckgabe"}


# ----------------------------------------------------------------------------- formatting


def decimal(value: int | None, places: int) -> str:
    """A whole number of hundredths (places 2) or an integer shown with places decimals, ``,`` separated: -1050 -> -10,50."""
    if value is None:
        return ""
    if places == 3:  # a whole quantity
        return f"{value},000"
    return money(value).replace(".", ",")


def field_text(kind: str, value: Any) -> str:
    if value is None:
        return '""' if kind == TEXT else ""
    if kind == TEXT:
        return '"' + str(value).replace('"', '""') + '"'
    if kind == INT:
        return str(int(value))
    if kind in (MONEY, RATE):
        return decimal(int(value), 2)
    if kind == QTY:
        return decimal(int(value), 3)
    raise ValueError(kind)


def local_time(ts: datetime | None, tz: ZoneInfo) -> str:
    return "" if ts is None else ts.astimezone(tz).strftime("%Y-%m-%dT%H:%M:%S")


def utc_time(ts: datetime | None) -> str:
    """A TSE time (whole seconds) as in the QR code, UTC with milliseconds; empty while unsigned."""
    return "" if ts is None else format_qr_time(int(ts.timestamp()))


class CsvTable:
    """One DSFinV-K table being written: header first, CRLF, ``;``, quoted text."""

    def __init__(self, table: Table, folder: Path):
        self.table = table
        self.path = folder / table.file
        self.handle: TextIO = self.path.open("w", encoding="utf-8", newline="")
        self.rows = 0
        self.handle.write(";".join(name for name, _ in table.columns) + "\r\n")

    def write(self, values: Iterable[Any]) -> None:
        values = list(values)
        assert len(values) == len(self.table.columns), (self.table.file, values)
        self.handle.write(";".join(field_text(kind, v) for (_, kind), v in zip(self.table.columns, values)) + "\r\n")
        self.rows += 1

    def close(self) -> None:
        self.handle.close()


# ----------------------------------------------------------------------------- index.xml and the DTD


GDPDU_DTD = """<?xml version="1.0" encoding="UTF-8"?>
<!-- GDPdU description standard, version 01-09-2004 (Beschreibungsstandard fuer die Datentraegerueberlassung):
     the structure of index.xml.  Written for Festpay after the published standard. -->
<!ELEMENT DataSet (Version, DataSupplier?, Command*, Media+)>
<!ELEMENT Version (#PCDATA)>
<!ELEMENT DataSupplier (Name, Location, Comment)>
<!ELEMENT Location (#PCDATA)>
<!ELEMENT Comment (#PCDATA)>
<!ELEMENT Command (#PCDATA)>

<!ELEMENT Media (Name, Command*, Table+, Command*)>

<!ELEMENT Table (URL, Name?, Description?, Validity?, (ANSI | Macintosh | OEM | UTF16 | UTF7 | UTF8)?, (DecimalSymbol, DigitGroupingSymbol)?,
                 SkipNumBytes?, Range?, Epoch?, (VariableLength | FixedLength))>
<!ELEMENT URL (#PCDATA)>
<!ELEMENT Name (#PCDATA)>
<!ELEMENT Description (#PCDATA)>
<!ELEMENT Validity (Range, Format?)>
<!ELEMENT Range (From, (To | Length)?)>
<!ELEMENT From (#PCDATA)>
<!ELEMENT To (#PCDATA)>
<!ELEMENT Length (#PCDATA)>
<!ELEMENT Format (#PCDATA)>
<!ELEMENT ANSI EMPTY>
<!ELEMENT Macintosh EMPTY>
<!ELEMENT OEM EMPTY>
<!ELEMENT UTF16 EMPTY>
<!ELEMENT UTF7 EMPTY>
<!ELEMENT UTF8 EMPTY>
<!ELEMENT DecimalSymbol (#PCDATA)>
<!ELEMENT DigitGroupingSymbol (#PCDATA)>
<!ELEMENT SkipNumBytes (#PCDATA)>
<!ELEMENT Epoch (#PCDATA)>

<!ELEMENT VariableLength (ColumnDelimiter?, RecordDelimiter?, TextEncapsulator?, VariablePrimaryKey+,
                          VariableColumn*, ForeignKey*)>
<!ELEMENT ColumnDelimiter (#PCDATA)>
<!ELEMENT RecordDelimiter (#PCDATA)>
<!ELEMENT TextEncapsulator (#PCDATA)>
<!ELEMENT VariablePrimaryKey (Name, Description?, (AlphaNumeric | Date | Numeric), MaxLength?, Map*)>
<!ELEMENT VariableColumn (Name, Description?, (AlphaNumeric | Date | Numeric), MaxLength?, Map*)>
<!ELEMENT MaxLength (#PCDATA)>

<!ELEMENT FixedLength (Length?, FixedPrimaryKey+, FixedColumn*, ForeignKey*)>
<!ELEMENT FixedPrimaryKey (Name, Description?, (AlphaNumeric | Date | Numeric), FixedRange, Map*)>
<!ELEMENT FixedColumn (Name, Description?, (AlphaNumeric | Date | Numeric), FixedRange, Map*)>
<!ELEMENT FixedRange (From, (To | Length))>

<!ELEMENT ForeignKey (Name+, References, Alias*)>
<!ELEMENT References (#PCDATA)>
<!ELEMENT Alias (From, To)>
<!ELEMENT Map (Description?, From, To)>

<!ELEMENT AlphaNumeric EMPTY>
<!ELEMENT Date (Format)>
<!ELEMENT Numeric ((ImpliedAccuracy | Accuracy)?)>
<!ELEMENT Accuracy (#PCDATA)>
<!ELEMENT ImpliedAccuracy (#PCDATA)>
"""


def _datatype(kind: str) -> str:
    return {TEXT: "<AlphaNumeric/>", INT: "<Numeric/>", MONEY: "<Numeric><Accuracy>2</Accuracy></Numeric>",
            RATE: "<Numeric><Accuracy>2</Accuracy></Numeric>", QTY: "<Numeric><Accuracy>3</Accuracy></Numeric>"}[kind]


def index_xml(supplier: str, location: str, first: date | None, last: date | None) -> str:
    """The GDPdU index.xml describing every table of TABLES (file, columns, keys, CSV format)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<!DOCTYPE DataSet SYSTEM "{DTD_NAME}">', "<DataSet>",
           "  <Version>1.0</Version>", "  <DataSupplier>", f"    <Name>{escape(supplier)}</Name>",
           f"    <Location>{escape(location)}</Location>",
           f"    <Comment>DSFinV-K {TAXONOMY_VERSION} export (Festpay)</Comment>", "  </DataSupplier>",
           "  <Media>", "    <Name>DSFinV-K</Name>"]
    for t in TABLES:
        out += ["    <Table>", f"      <URL>{t.file}</URL>", f"      <Name>{t.name}</Name>",
                f"      <Description>{escape(t.description)}</Description>"]
        if first and last:
            out += ["      <Validity>", "        <Range>", f"          <From>{first:%d.%m.%Y}</From>",
                    f"          <To>{last:%d.%m.%Y}</To>", "        </Range>", "        <Format>dd.MM.yyyy</Format>",
                    "      </Validity>"]
        out += ["      <UTF8/>", "      <DecimalSymbol>,</DecimalSymbol>",
                "      <DigitGroupingSymbol>.</DigitGroupingSymbol>", "      <VariableLength>",
                "        <ColumnDelimiter>;</ColumnDelimiter>", "        <RecordDelimiter>&#13;&#10;</RecordDelimiter>",
                '        <TextEncapsulator>"</TextEncapsulator>']
        for i, (name, kind) in enumerate(t.columns):
            tag = "VariablePrimaryKey" if i < t.keys else "VariableColumn"
            out.append(f"        <{tag}><Name>{name}</Name>{_datatype(kind)}</{tag}>")
        if t.foreign:
            out += ["        <ForeignKey>", "          <Name>Z_KASSE_ID</Name>", "          <Name>Z_ERSTELLUNG</Name>",
                    "          <Name>Z_NR</Name>", f"          <References>{t.foreign}</References>",
                    "        </ForeignKey>"]
        out += ["      </VariableLength>", "    </Table>"]
    out += ["  </Media>", "</DataSet>", ""]
    return "\r\n".join(out)


# ----------------------------------------------------------------------------- reading and writing


@dataclass
class Closing:
    id: int
    client_id: str
    assignment_id: int | None
    z_nr: int
    closed_at: datetime
    first_id: int
    last_id: int
    device: str | None
    key: tuple[str, str, int] = ("", "", 0)
    payments: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    cases: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)
    tses: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class ExportResult:
    path: Path
    closings: int
    receipts: int
    lines: int
    rows: dict[str, int]


def close_open_tills(conn, event_id: int) -> list[tuple[str, int, int]]:
    """Closes every till of the event with open receipts (each in its own transaction). Returns (client, z_nr, n)."""
    done = []
    tills = conn.execute("SELECT assignment_id, client_id FROM api.open_cashpoints(%s)", (event_id,)).fetchall()
    for assignment_id, client_id in tills:
        with conn.transaction():
            z_nr, n = conn.execute("SELECT z_nr, transactions FROM api.close_cashpoint(%s, %s)",
                                   (event_id, assignment_id)).fetchone()
        done.append((client_id, z_nr, n))
    return done


def export(conn, event_id: int, out: Path, first: date | None = None, last: date | None = None,
           progress: Callable[[str], None] | None = None, every: int = PROGRESS_EVERY) -> ExportResult:
    """Writes the DSFinV-K zip of the event's closings (closed between first and last, inclusive, local dates) to out.

    ``conn`` is an autocommit psycopg connection as the owner or a superuser; the export reads in one repeatable-read
    transaction (one snapshot).  ``progress`` gets a counter line every ``every`` rows.
    """
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        result = _export(conn, event_id, out, first, last, progress, every)
    except BaseException:
        with contextlib.suppress(psycopg.Error):  # a broken connection must not hide the export's own error
            conn.execute("ROLLBACK")
        raise
    conn.execute("ROLLBACK")                      # read only: nothing to keep
    return result


def _export(conn, event_id, out, first, last, progress, every) -> ExportResult:
    name, currency, tz_name, seller, address = conn.execute(
        "SELECT name, currency, time_zone, seller_name, seller_address FROM ledger.event WHERE id = %s",
        (event_id,)).fetchone()
    tz = ZoneInfo(tz_name)
    seller = seller or name
    rows = conn.execute(
        """SELECT c.id, c.client_id, c.assignment_id, c.z_nr, c.closed_at, c.first_transaction_id,
                  c.last_transaction_id, a.device
             FROM ledger.cashpoint_closing c LEFT JOIN ledger.assignment a ON a.id = c.assignment_id
            WHERE c.event_id = %s
              AND (%s::date IS NULL OR (c.closed_at AT TIME ZONE %s)::date >= %s::date)
              AND (%s::date IS NULL OR (c.closed_at AT TIME ZONE %s)::date <= %s::date)
            ORDER BY c.client_id, c.z_nr""", (event_id, first, tz_name, first, last, tz_name, last)).fetchall()
    closings = {r[0]: Closing(*r) for r in rows}
    for c in closings.values():
        c.key = (c.client_id, local_time(c.closed_at, tz), c.z_nr)
    ids = list(closings)
    tse_ids: dict[str, int] = {}
    counted = 0

    def tick(what: str) -> None:
        nonlocal counted
        counted += 1
        if progress and counted % every == 0:
            progress(f"dsfinvk: {counted} rows ({what})")

    with tempfile.TemporaryDirectory(prefix="dsfinvk-") as tmp:
        folder = Path(tmp)
        w = {t.file: CsvTable(t, folder) for t in TABLES}
        n_lines = 0
        # Lines, their VAT, and per receipt the VAT sums (the lines come in receipt order).
        bon_key: tuple[int, int] | None = None
        bon_vat: dict[int, list[int]] = {}

        def flush_bon() -> None:
            if bon_key is None:
                return
            c = closings[bon_key[0]]
            for vat_key, (gross, net, tax) in sorted(bon_vat.items()):
                w["transactions_vat.csv"].write([*c.key, bon_key[1], vat_key, gross, net, tax])

        with conn.cursor(name="dsfinvk_lines") as cur:
            cur.itersize = 2000
            cur.execute("SELECT * FROM api.dsfinvk_lines(%s)", (ids,))
            for (closing_id, tx_id, line_no, gv_typ, gv_name, article, quantity, unit_price, vat_key, _rate,
                 gross, net, tax) in cur:
                c = closings[closing_id]
                if (closing_id, tx_id) != bon_key:
                    flush_bon()
                    bon_key, bon_vat = (closing_id, tx_id), {}
                sums = bon_vat.setdefault(vat_key, [0, 0, 0])
                case = c.cases.setdefault((gv_typ, gv_name, vat_key), [0, 0, 0])
                for acc in (sums, case):
                    acc[0] += gross
                    acc[1] += net
                    acc[2] += tax
                w["lines.csv"].write([*c.key, tx_id, line_no, None, article, c.client_id, gv_typ, gv_name, 1, "0",
                                      None, None, None, None, None, quantity, 1, "Stk", unit_price])
                w["lines_vat.csv"].write([*c.key, tx_id, line_no, vat_key, gross, net, tax])
                n_lines += 1
                tick("lines")
        flush_bon()

        n_receipts = 0
        with conn.cursor(name="dsfinvk_receipts") as cur:
            cur.itersize = 2000
            cur.execute("SELECT * FROM api.dsfinvk_receipts(%s)", (ids,))
            for (closing_id, tx_id, tx_type, _terminal_no, started, ended, total, pay_type, pay_name, serial,
                 tse_tx, counter, tse_start, tse_end, process_type, process_data, signature, public_key,
                 algorithm) in cur:
                c = closings[closing_id]
                w["transactions.csv"].write([*c.key, tx_id, tx_id, "Beleg", BON_NAMES.get(tx_type, tx_type),
                                             c.client_id, "0", local_time(started, tz), local_time(ended, tz),
                                             "festpay", None, total, None, None, None, None, None, None, None,
                                             None, None])
                w["allocation_groups.csv"].write([*c.key, tx_id, tx_type])
                w["datapayment.csv"].write([*c.key, tx_id, pay_type, pay_name, currency, total, total])
                c.payments[(pay_type, pay_name)] += total
                if serial:
                    tse_id = tse_ids.setdefault(serial, len(tse_ids) + 1)
                    c.tses.setdefault(serial, (algorithm, public_key))
                    w["transactions_tse.csv"].write([*c.key, tx_id, tse_id, tse_tx, utc_time(tse_start),
                                                     utc_time(tse_end), process_type, counter, signature, None,
                                                     process_data])
                else:
                    w["transactions_tse.csv"].write([*c.key, tx_id, None, None, None, None, "Kassenbeleg-V1", None,
                                                     None, "TSE ausgefallen: noch nicht signiert", None])
                n_receipts += 1
                tick("receipts")

        version = _software_version()
        for c in closings.values():
            paid = sum(c.payments.values())
            cash = sum(v for (typ, _), v in c.payments.items() if typ == "Bar")
            w["cashpointclosing.csv"].write([*c.key, local_time(c.closed_at, tz)[:10], TAXONOMY_VERSION,
                                             c.first_id, c.last_id, seller, address, None, None, "DEU", None, None,
                                             paid, cash])
            w["location.csv"].write([*c.key, seller, address, None, None, "DEU", None])
            w["cashregister.csv"].write([*c.key, c.client_id, "Festpay",
                                         c.device or ("Festpay Backend" if c.assignment_id is None else "Terminal"),
                                         "Festpay", version, currency, None])
            for vat_key, rate, label in VAT_KEYS:
                w["vat.csv"].write([*c.key, vat_key, rate, label])
            for serial, (algorithm, public_key) in sorted(c.tses.items(), key=lambda s: tse_ids[s[0]]):
                w["tse.csv"].write([*c.key, tse_ids[serial], serial, algorithm, "unixTime", "UTF-8", public_key,
                                    None, None])
            for (gv_typ, gv_name, vat_key), (gross, net, tax) in sorted(c.cases.items()):
                w["businesscases.csv"].write([*c.key, gv_typ, gv_name, 0, vat_key, gross, net, tax])
            for (pay_type, pay_name), amount in sorted(c.payments.items()):
                w["payment.csv"].write([*c.key, pay_type, pay_name, amount])
            w["cash_per_currency.csv"].write([*c.key, currency, cash])
            tick("closings")

        for table in w.values():
            table.close()
        dates = [c.closed_at.astimezone(tz).date() for c in closings.values()]
        xml = index_xml(seller, address or name, first or (min(dates) if dates else None),
                        last or (max(dates) if dates else None))
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part")
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("index.xml", xml)
                zf.writestr(DTD_NAME, GDPDU_DTD)
                for table in w.values():
                    zf.write(table.path, table.table.file)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(out)
        return ExportResult(out, len(closings), n_receipts, n_lines, {f: t.rows for f, t in w.items()})


def _software_version() -> str:
    try:
        from importlib.metadata import version

        return version("festpay")
    except Exception:  # not installed: running from the tree
        return "0.1.0"


# ----------------------------------------------------------------------------- CLI


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_parser(subparsers: Any, admin_url: Callable[[Any], str],
               event_id: Callable[[Any, str | None], int | None]) -> argparse.ArgumentParser:
    """Adds ``export dsfinvk`` to the ``festpay`` subparsers (``admin_url``, ``event_id``: cli.py's helpers)."""
    p = subparsers.add_parser("export", help="exports for tax audits (DSFinV-K)")
    sub = p.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    d = sub.add_parser("dsfinvk", help="DSFinV-K zip (CSV tables, index.xml, GDPdU DTD) of the closed receipts")
    d.add_argument("--event", required=True, help="the event (id or name)")
    d.add_argument("--from", dest="first", type=_parse_date, metavar="DATE", help="closings from this date (YYYY-MM-DD)")
    d.add_argument("--to", dest="last", type=_parse_date, metavar="DATE", help="closings up to this date (inclusive)")
    d.add_argument("--close", action="store_true", help="close every till with open receipts first (Kassenabschluss)")
    d.add_argument("--out", required=True, type=Path, metavar="FILE.zip", help="where to write the zip")
    d.add_argument("--database-url", help="read from this database (owner or superuser; default: festpay's)")
    d.set_defaults(func=lambda args, settings: cmd_export_dsfinvk(
        args, args.database_url or admin_url(settings), event_id))
    return p


def cmd_export_dsfinvk(args: argparse.Namespace, database_url: str,
                       event_id: Callable[[Any, str | None], int | None]) -> int:
    """``festpay export dsfinvk``: 0 written, 1 nothing to export (reason on stderr)."""
    import psycopg

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with psycopg.connect(database_url, autocommit=True) as conn:
        eid = event_id(conn, args.event)
        if args.close:
            for client, z_nr, n in close_open_tills(conn, eid):
                print(f"closed {client}: Z_NR {z_nr}, {n} receipts", file=sys.stderr)
        open_tills = conn.execute("SELECT count(*), coalesce(sum(transactions), 0) FROM api.open_cashpoints(%s)",
                                  (eid,)).fetchone()
        result = export(conn, eid, args.out, args.first, args.last, progress)
    if open_tills[0]:
        print(f"festpay: note: {open_tills[1]} receipts at {open_tills[0]} tills are not closed yet and not "
              f"exported (use --close)", file=sys.stderr)
    if not result.closings:
        print("festpay: no cash-point closings in that range; nothing exported (close the tills: --close)",
              file=sys.stderr)
    print(f"Wrote {result.path}: {result.closings} closings, {result.receipts} receipts, {result.lines} lines")
    return 0 if result.closings else 1
