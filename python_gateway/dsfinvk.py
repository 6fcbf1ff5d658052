"""DSFinV-K export (SPEC §8): ``festpay export dsfinvk --event ID|NAME [--from DATE --to DATE]
[--close] --out FILE.zip``.

Writes a zip with the DSFinV-K CSV tables, ``index.xml`` (GDPdU description of every table) and the GDPdU DTD
``gdpdu-01-09-2004.dtd``.  The CSV files are UTF-8, ``;`` separated, CRLF line ends, ``,`` as decimal separator,
text in double quotes (numbers bare), a header line with the DSFinV-K column names first.

Presentation only: which receipts a cash-point closing (Kassenabschluss) covers, its Z number, every amount and sum,
the business case of every line and its gross, net and tax come from the database (``api.close_cashpoint``,
``api.dsfinvk_event``, ``api.dsfinvk_closings``, ``api.dsfinvk_lines``, ``api.dsfinvk_receipts`` in
``procedures/60_closing.sql``; for an admin session the ``api.admin_dsfinvk_*`` twins).  Every line is a line of
``ledger.receipt_lines``, the one rule the printed receipt and the signed process data follow too, so receipt,
signature and export agree to the cent: VAT is rounded once per receipt and rate, and each line carries its share.
Only closed receipts are exported, organised per closing (``Z_KASSE_ID`` = the till's TSE client id,
``Z_ERSTELLUNG`` = when it was closed, ``Z_NR``); ``--close`` closes every till with open receipts first.
``--from``/``--to`` select closings by their date in the event's time zone.

Business cases (GV_TYP / GV_NAME of ``lines.csv``; amounts from the till's side, money in positive):

====================  ======================  ====================================================  ==============
Festpay line          GV_TYP                  GV_NAME                                               USt-Schluessel
====================  ======================  ====================================================  ==============
top-up (the credit)   MehrzweckgutscheinKauf  Aufladung Guthaben (Mehrzweckgutschein), <method>     5 (0 %)
top-up fee            Umsatz                  Gebuehr Aufladung                                     1 (19 %)
sale, item            Umsatz                  MehrzweckgutscheinEinloesung (paid with credit)       by rate
sale, deposit item    Pfand                   MehrzweckgutscheinEinloesung                          by rate
deposit return        PfandRueckzahlung       MehrzweckgutscheinEinloesung (back onto credit)       by rate
chargeback            Umsatz (negative)       Rueckbuchung (Gutschrift auf Mehrzweckgutschein)      by sale's rate
refund (cash)         Auszahlung (negative)   Auszahlung Restguthaben Mehrzweckgutschein (Bar)      5 (0 %)
payout (bank)         Auszahlung (negative)   Auszahlung Restguthaben ... (Ueberweisung)            5 (0 %)
payout fee            Umsatz                  Gebuehr Auszahlung                                    1 (19 %)
====================  ======================  ====================================================  ==============

Which source each mapping follows:

- Credit is a multi-purpose voucher (Mehrzweckgutschein, § 3 Abs. 15 UStG): selling it (a top-up) and paying it back
  (refund, payout) are not taxable, key 5; VAT arises when it is redeemed for goods, at the goods' rates, and the
  redemption is named ``MehrzweckgutscheinEinloesung``.  Sources: § 3 Abs. 13-15 UStG and BMF letter "Umsatzsteuerliche
  Behandlung von Gutscheinen" of 2 November 2020 (UStAE 3.17); fiskaltrust interface documentation for Germany,
  ftPayItemCase (voucher: key 5, MehrzweckgutscheinKauf / MehrzweckgutscheinEinloesung).
- A deposit on a goods container (the cup) is a dependent secondary service of the drink in it and takes the drink's
  rate; its return reduces the taxable amount at the same rate (§ 17 UStG).  The deposit product carries that rate
  (the demo's cup deposit: 19 %, as its beer), and the sale and the return use the item's rate, never a fixed 0 %.
  Sources: BMF letter "Umsatzsteuerrechtliche Behandlung der Hin- und Rueckgabe von Transportbehaeltnissen" of
  5 November 2013; DSFinV-K business cases ``Pfand`` and ``PfandRueckzahlung`` with the VAT key of their rate.
- A fee for a top-up or a payout is consideration for a service of the festival of its own (§ 3 Abs. 9 UStG), not
  part of the voucher, taxed at the general rate of § 12 Abs. 1 UStG (``ledger.fee_vat_rate``): a line of its own at
  key 1.  The top-up's voucher line is the credit the customer gets (amount minus fee).
- Payment names: cash ``Bar``/``Bar``, card ``Unbar``/``Karte``, online top-up ``Unbar``/``Online``, payout
  ``Unbar``/``Ueberweisung``, credit ``Unbar``/``Mehrzweckgutschein``.  VAT keys (``vat.csv``): 1 = 19 %, 2 = 7 %,
  3 = 10,7 %, 4 = 5,5 %, 5 = 0 % (nicht steuerbar).
- A chargeback returns part of a sale to the customer's credit: it reduces the taxable amount of that sale (§ 17
  Abs. 1 UStG, Aenderung der Bemessungsgrundlage), so it is split over the sale's VAT rates in proportion to the
  merchant's share at each rate (items without deposits), each part a negative ``Umsatz`` line at its rate's key.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import psycopg

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
    return f"{'-' if value < 0 else ''}{abs(value) // 100},{abs(value) % 100:02d}"


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
    payments: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    key: tuple[str, str, int] = ("", "", 0)
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
           progress: Callable[[str], None] | None = None, every: int = PROGRESS_EVERY,
           token: str | None = None) -> ExportResult:
    """Writes the DSFinV-K zip of the event's closings (closed between first and last, inclusive, local dates) to out.

    ``conn`` is an autocommit psycopg connection: a DBA's, or, with ``token`` (an admin session with the finance
    privilege), the admin site's (``api.admin_dsfinvk_*``).  The export reads in one repeatable-read transaction (one
    snapshot).  ``progress`` gets a counter line every ``every`` rows.
    """
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        result = _export(conn, event_id, out, first, last, progress, every, token)
    except BaseException:
        with contextlib.suppress(psycopg.Error):  # a broken connection must not hide the export's own error
            conn.execute("ROLLBACK")
        raise
    conn.execute("ROLLBACK")                      # nothing to keep
    return result


def _export(conn, event_id, out, first, last, progress, every, token) -> ExportResult:
    def rows(fn: str, *args: Any, named: str | None = None):
        """``SELECT * FROM api.<fn>(...)`` (or api.admin_<fn>(token, ...) for an admin session)."""
        name, params = (f"api.admin_{fn}", (token, *args)) if token else (f"api.{fn}", args)
        sql = f"SELECT * FROM {name}({', '.join(['%s'] * len(params))})"
        if named is None:
            return conn.execute(sql, params).fetchall()
        cur = conn.cursor(name=named)
        cur.itersize = 2000
        cur.execute(sql, params)
        return cur

    found = rows("dsfinvk_event", event_id)
    if not found:
        raise ValueError(f"no event {event_id}")
    name, currency, tz_name, seller = found[0]
    tz = ZoneInfo(tz_name)
    closings: dict[int, Closing] = {}
    for (cid, client_id, assignment_id, device, z_nr, closed_at, first_id, last_id, payments,
         cases) in rows("dsfinvk_closings", event_id, first, last):
        c = Closing(cid, client_id, assignment_id, z_nr, closed_at, first_id, last_id, device, payments, cases)
        c.key = (client_id, local_time(closed_at, tz), z_nr)
        closings[cid] = c
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
        with rows("dsfinvk_lines", ids, named="dsfinvk_lines") as cur:
            for (closing_id, tx_id, line_no, _gv_typ, _gv_name, article, quantity, unit_price, vat_key, _rate,
                 gross, net, tax) in cur:
                c = closings[closing_id]
                w["lines.csv"].write([*c.key, tx_id, line_no, None, article, c.client_id, _gv_typ, _gv_name, 1, "0",
                                      None, None, None, None, None, quantity, 1, "Stk", unit_price])
                w["lines_vat.csv"].write([*c.key, tx_id, line_no, vat_key, gross, net, tax])
                n_lines += 1
                tick("lines")

        n_receipts = 0
        with rows("dsfinvk_receipts", ids, named="dsfinvk_receipts") as cur:
            for (closing_id, tx_id, tx_type, _terminal_no, started, ended, total, pay_type, pay_name, vat, serial,
                 tse_tx, counter, tse_start, tse_end, process_type, process_data, signature, public_key,
                 algorithm) in cur:
                c = closings[closing_id]
                w["transactions.csv"].write([*c.key, tx_id, tx_id, "Beleg", BON_NAMES.get(tx_type, tx_type),
                                             c.client_id, "0", local_time(started, tz), local_time(ended, tz),
                                             "festpay", None, total, None, None, None, None, None, None, None,
                                             None, None])
                for v in vat:
                    w["transactions_vat.csv"].write([*c.key, tx_id, v["vat_key"], v["gross"], v["net"], v["tax"]])
                w["allocation_groups.csv"].write([*c.key, tx_id, tx_type])
                w["datapayment.csv"].write([*c.key, tx_id, pay_type, pay_name, currency, total, total])
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
            paid = sum(p["amount"] for p in c.payments)
            cash = sum(p["amount"] for p in c.payments if p["type"] == "Bar")
            w["cashpointclosing.csv"].write([*c.key, local_time(c.closed_at, tz)[:10], TAXONOMY_VERSION,
                                             c.first_id, c.last_id, seller["name"], seller["street"],
                                             seller["postcode"], seller["city"], seller["country"],
                                             seller["tax_number"], seller["vat_id"], paid, cash])
            w["location.csv"].write([*c.key, seller["name"], seller["street"], seller["postcode"], seller["city"],
                                     seller["country"], seller["vat_id"]])
            w["cashregister.csv"].write([*c.key, c.client_id, "Festpay",
                                         c.device or ("Festpay Backend" if c.assignment_id is None else "Terminal"),
                                         "Festpay", version, currency, None])
            for vat_key, rate, label in VAT_KEYS:
                w["vat.csv"].write([*c.key, vat_key, rate, label])
            for serial, (algorithm, public_key) in sorted(c.tses.items(), key=lambda s: tse_ids[s[0]]):
                w["tse.csv"].write([*c.key, tse_ids[serial], serial, algorithm, "unixTime", "UTF-8", public_key,
                                    None, None])
            for g in c.cases:
                w["businesscases.csv"].write([*c.key, g["gv_typ"], g["gv_name"], 0, g["vat_key"], g["gross"],
                                              g["net"], g["tax"]])
            for p in c.payments:
                w["payment.csv"].write([*c.key, p["type"], p["name"], p["amount"]])
            w["cash_per_currency.csv"].write([*c.key, currency, cash])
            tick("closings")

        for table in w.values():
            table.close()
        dates = [c.closed_at.astimezone(tz).date() for c in closings.values()]
        address = ", ".join(x for x in (seller["street"], f"{seller['postcode']} {seller['city']}".strip()) if x)
        xml = index_xml(seller["name"], address or name, first or (min(dates) if dates else None),
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
