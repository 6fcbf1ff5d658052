"""Bank files of a payout run: the SEPA credit transfer (pain.001.001.03, made with sepaxml) and the CSV.

Both are made from the run's document as ``api.admin_payout_export`` returns it (:func:`run_from_document`).

- :func:`sepa_xml`: one transfer per line with an amount above 0 (a line that donates everything transfers nothing
  and is only in the CSV), from the festival's account (debtor name, IBAN, BIC of the document) on the run's
  execution date, each with the line's end-to-end id and a remittance text naming the event and the wristband.
  Names and texts are written in the SEPA character set (transliterated: ``Müller`` -> ``Mueller``) and cut to
  SEPA's lengths (70 for a name, 140 for the remittance text).  Every IBAN is checked with schwifty first, and the
  file is validated against the pain.001.001.03 schema (the XSD sepaxml ships) before it is handed out: a file that
  does not validate is refused (:class:`SepaError`), never downloaded.  A run's file is the same, byte for byte,
  however often it is made: its message id (``MsgId``) and payment information id (``PmtInfId``) are derived from
  the event, the run id and the run's creation time (:func:`message_id`), and its creation time (``CreDtTm``) is
  the run's, so a bank's duplicate check recognises a second upload of the same run.
- :func:`csv_table`: one row per line (transfers and donations), amounts in the currency with a dot (``19.00``)
  and in cents, each column's unit in its header.
- :func:`check_iban`: an IBAN as schwifty reads it, or :class:`IbanError` saying why not (for the portal's form).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import sepaxml
import xmlschema
from schwifty import IBAN
from schwifty import exceptions as iban_errors
from text_unidecode import unidecode

SCHEMA = "pain.001.001.03"
NAMESPACE = f"urn:iso:std:iso:20022:tech:xsd:{SCHEMA}"
XSD = Path(sepaxml.__file__).resolve().parent / "schemas" / f"{SCHEMA}.xsd"
MAX_NAME = 70
MAX_REMITTANCE = 140
MAX_ID = 35

#: What the SEPA character set allows (the EPC's basic Latin set); everything else is transliterated or a space.
_NOT_SEPA = re.compile(r"[^A-Za-z0-9/?:().,'+ -]")
_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss", "&": "+"})
_SPACES = re.compile(r"\s+")


class SepaError(ValueError):
    """The run cannot be written as a valid SEPA file (said in words)."""


class IbanError(ValueError):
    """An IBAN that schwifty refuses: ``reason`` is one of ``characters``, ``country``, ``length``, ``structure``,
    ``checksum``; ``country`` its first two letters, ``expected``/``actual`` the lengths (for ``length``)."""

    def __init__(self, reason: str, message: str, *, country: str = "", expected: int = 0, actual: int = 0):
        super().__init__(message)
        self.reason = reason
        self.country = country
        self.expected = expected
        self.actual = actual


def compact_iban(text: str) -> str:
    """An IBAN as typed (spaces, lower case) in its electronic form: ``de89 3704...`` -> ``DE893704...``."""
    return re.sub(r"\s+", "", text or "").upper()


def check_iban(text: str) -> IBAN:
    """The IBAN ``text`` as schwifty validates it (country, length, structure, check digits), or :class:`IbanError`."""
    compact = compact_iban(text)
    if not compact or not compact.isalnum() or not compact.isascii():
        raise IbanError("characters", "an IBAN holds only letters and digits")
    try:
        spec_of = IBAN(compact, allow_invalid=True)
    except iban_errors.InvalidCountryCode:
        raise IbanError("country", f"unknown country code {compact[:2]!r}", country=compact[:2]) from None
    country = spec_of.country_code
    try:
        return IBAN(compact)
    except iban_errors.InvalidLength:
        expected = spec_of.spec.iban_length
        raise IbanError("length", f"an IBAN of {country} has {expected} characters, this one {len(compact)}",
                        country=country, expected=expected, actual=len(compact)) from None
    except iban_errors.InvalidChecksumDigits:
        raise IbanError("checksum", "the check digits do not match (a typo?)", country=country) from None
    except iban_errors.InvalidCountryCode:
        raise IbanError("country", f"unknown country code {country!r}", country=country) from None
    except iban_errors.SchwiftyException as err:
        raise IbanError("structure", f"not the form of an IBAN of {country}: {err}", country=country) from None


def sepa_text(text: str | None, limit: int) -> str:
    """``text`` in the SEPA character set (German umlauts as ae/oe/ue/ss, other letters transliterated, the rest
    a space), spaces collapsed, cut to ``limit`` characters."""
    value = unicodedata.normalize("NFC", text or "").translate(_GERMAN)
    value = _NOT_SEPA.sub(" ", unidecode(value))
    return _SPACES.sub(" ", value).strip()[:limit].rstrip()


@dataclass(frozen=True)
class PayoutLine:
    """One customer of a run: what is transferred (``amount``), the fee kept and the donation, in cents."""

    line_no: int
    uid: str
    holder: str | None
    iban: str | None
    email: str | None
    amount: int
    fee: int
    donation: int
    end_to_end_id: str


@dataclass(frozen=True)
class PayoutRun:
    """A run's document: its facts, the festival's account (the debtor) and its lines."""

    id: int
    execution_date: date
    currency: str
    debtor_name: str
    debtor_iban: str
    debtor_bic: str
    event_name: str
    lines: tuple[PayoutLine, ...]
    #: When the run was made (its file's creation time and part of its ids) and the event it belongs to.
    created_at: datetime | None = None
    event_id: int | None = None

    @property
    def transfers(self) -> tuple[PayoutLine, ...]:
        """The lines with money to transfer (a line that donates everything has none)."""
        return tuple(line for line in self.lines if line.amount > 0)


def _cents(value: Any) -> int:
    return int(value or 0)


def run_from_document(document: dict[str, Any], event_name: str) -> PayoutRun:
    """The run of an ``api.admin_payout_export`` (or ``api.admin_payout_run``) document."""
    run = document.get("run") or {}
    debtor = document.get("debtor") or {}
    lines = tuple(
        PayoutLine(line_no=int(line["line_no"]), uid=str(line.get("uid") or ""), holder=line.get("holder"),
                   iban=line.get("iban"), email=line.get("email"), amount=_cents(line.get("amount")),
                   fee=_cents(line.get("fee")), donation=_cents(line.get("donation")),
                   end_to_end_id=str(line.get("end_to_end_id") or f"FP-{run.get('id')}-{line['line_no']}"))
        for line in document.get("lines") or ()
    )
    created = run.get("created_at")
    event_id = document.get("event_id")
    return PayoutRun(id=int(run["id"]), execution_date=date.fromisoformat(str(run["execution_date"])[:10]),
                     currency=str(document.get("currency") or "EUR"), debtor_name=str(debtor.get("name") or ""),
                     debtor_iban=str(debtor.get("iban") or ""), debtor_bic=str(debtor.get("bic") or ""),
                     event_name=event_name, lines=lines,
                     created_at=datetime.fromisoformat(str(created)) if created else None,
                     event_id=int(event_id) if event_id is not None else None)


def remittance(run: PayoutRun, line: PayoutLine) -> str:
    """The text the customer's bank statement shows."""
    return sepa_text(f"Auszahlung Restguthaben {run.event_name} / Festpay payout, Armband {line.uid}",
                     MAX_REMITTANCE)


@lru_cache(maxsize=1)
def _schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def validate_pain001(document: bytes) -> None:
    """Raises :class:`SepaError` unless ``document`` is a pain.001.001.03 file that the schema accepts."""
    try:
        _schema().validate(document.decode("utf-8"))
    except xmlschema.XMLSchemaValidationError as err:
        where = f" at {err.path}" if getattr(err, "path", None) else ""
        raise SepaError(f"the SEPA file does not validate against {SCHEMA}{where}: {err.reason}") from None
    except (ElementTree.ParseError, xmlschema.XMLSchemaException, UnicodeDecodeError) as err:
        raise SepaError(f"the SEPA file is not well-formed XML: {err}") from None


def _debtor(run: PayoutRun) -> dict[str, Any]:
    name = sepa_text(run.debtor_name, MAX_NAME)
    if not name or not run.debtor_iban:
        raise SepaError("the festival's account (payout debtor name and IBAN) is not set in the event settings")
    try:
        iban = check_iban(run.debtor_iban)
    except IbanError as err:
        raise SepaError(f"the festival's IBAN is not valid: {err}") from None
    config: dict[str, Any] = {"name": name, "IBAN": iban.compact, "batch": True, "currency": run.currency}
    if run.debtor_bic:
        config["BIC"] = run.debtor_bic.strip().upper()
    return config


def _payment(run: PayoutRun, line: PayoutLine) -> dict[str, Any]:
    name = sepa_text(line.holder, MAX_NAME)
    if not name:
        raise SepaError(f"line {line.line_no} ({line.uid}) transfers money but has no account holder")
    try:
        iban = check_iban(line.iban or "")
    except IbanError as err:
        raise SepaError(f"line {line.line_no} ({line.uid}): the IBAN is not valid: {err}") from None
    return {"name": name, "IBAN": iban.compact, "amount": line.amount, "execution_date": run.execution_date,
            "description": remittance(run, line), "endtoend_id": sepa_text(line.end_to_end_id, MAX_ID)}


def _created_utc(run: PayoutRun) -> datetime:
    if run.created_at is None:
        raise SepaError(f"payout run {run.id} has no creation time: its file's ids cannot be made")
    moment = run.created_at if run.created_at.tzinfo else run.created_at.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def message_id(run: PayoutRun) -> str:
    """The run's message id (``MsgId``, also its ``PmtInfId``): ``FESTPAY-<event>-RUN-<run>-<created, UTC,
    yyyymmddHHMMSS>``, the same for every file of the run and different for every run; at most 35 characters of
    letters, digits and hyphens (a shorter form for long ids, a hash of them past that)."""
    stamp = _created_utc(run).strftime("%Y%m%d%H%M%S")
    event = "" if run.event_id is None else str(run.event_id)
    for candidate in (f"FESTPAY-{event}-RUN-{run.id}-{stamp}" if event else f"FESTPAY-RUN-{run.id}-{stamp}",
                      f"FP-{event}-{run.id}-{stamp}" if event else f"FP-{run.id}-{stamp}"):
        if len(candidate) <= MAX_ID:
            return candidate
    return "FP-" + hashlib.sha256(f"{event}-{run.id}-{stamp}".encode()).hexdigest()[:MAX_ID - 3].upper()


class _RunTransfer(sepaxml.SepaTransfer):
    """sepaxml's credit transfer with the run's own ids and creation time in place of the random ids and the clock
    time sepaxml writes (its header is made in ``__init__``, the payment information blocks in ``export``)."""

    def __init__(self, config: dict[str, Any], msg_id: str, created: datetime):
        super().__init__(config, schema=SCHEMA, clean=True)
        self.msg_id = msg_id
        header = self._xml.find("CstmrCdtTrfInitn/GrpHdr")
        header.find("MsgId").text = msg_id
        header.find("CreDtTm").text = created.strftime("%Y-%m-%dT%H:%M:%S") + "Z"

    def _finalize_batch(self) -> None:
        super()._finalize_batch()
        blocks = self._xml.findall("CstmrCdtTrfInitn/PmtInf/PmtInfId")
        for n, block in enumerate(blocks, 1):
            suffix = f"-{n}" if len(blocks) > 1 else ""
            block.text = self.msg_id[:MAX_ID - len(suffix)] + suffix


def sepa_xml(run: PayoutRun) -> bytes:
    """The run's SEPA credit transfer (pain.001.001.03, UTF-8), validated against the schema; the same bytes every
    time for the same run (ids and creation time from the run: :func:`message_id`).

    Raises :class:`SepaError` when the run transfers nothing, when an IBAN or the festival's account is not valid,
    when the run's creation time is unknown, or when the file does not validate."""
    transfers = run.transfers
    if not transfers:
        raise SepaError(f"payout run {run.id} transfers no money (every line donates everything): there is no SEPA "
                        "file to make; the CSV lists its lines")
    if any(line.amount < 0 for line in run.lines):
        raise SepaError(f"payout run {run.id} has a line with a negative amount")
    sepa = _RunTransfer(_debtor(run), message_id(run), _created_utc(run))
    for line in transfers:
        sepa.add_payment(_payment(run, line))
    document = sepa.export(validate=False)
    validate_pain001(document)
    return document


def sepa_summary(document: bytes) -> dict[str, Any]:
    """What a pain.001 file says: the header's count and sum (cents), and per transfer its end-to-end id, IBAN,
    name and amount (cents); for checking a file against its run."""
    ns = {"p": NAMESPACE}
    root = ElementTree.fromstring(document)

    def cents(text: str | None) -> int:
        whole, _, frac = (text or "0").partition(".")
        return int(whole) * 100 + int((frac or "0").ljust(2, "0")[:2])

    header = root.find("p:CstmrCdtTrfInitn/p:GrpHdr", ns)
    transfers = [
        {"end_to_end_id": tx.findtext("p:PmtId/p:EndToEndId", namespaces=ns),
         "iban": tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=ns),
         "name": tx.findtext("p:Cdtr/p:Nm", namespaces=ns),
         "amount": cents(tx.findtext("p:Amt/p:InstdAmt", namespaces=ns)),
         "remittance": tx.findtext("p:RmtInf/p:Ustrd", namespaces=ns)}
        for tx in root.iterfind(".//p:CdtTrfTxInf", ns)
    ]
    return {"count": int(header.findtext("p:NbOfTxs", namespaces=ns) or 0),
            "sum": cents(header.findtext("p:CtrlSum", namespaces=ns)),
            "execution_dates": [d.text for d in root.iterfind(".//p:PmtInf/p:ReqdExctnDt", ns)],
            "debtor_iban": root.findtext(".//p:PmtInf/p:DbtrAcct/p:Id/p:IBAN", namespaces=ns),
            "transfers": transfers}


def decimal_amount(cents: int) -> str:
    """Cents as the currency with a dot: ``1900`` -> ``19.00``, ``5`` -> ``0.05``."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def csv_table(run: PayoutRun) -> tuple[list[str], list[list[Any]]]:
    """The CSV's header and rows: every line of the run (donations too), amounts in the currency (``amount_eur``,
    ``19.00``) and in cents (``amount_cents``)."""
    unit = run.currency.lower()
    header = ["line_no", "uid", "holder", "iban", "email", f"amount_{unit}", f"fee_{unit}", f"donation_{unit}",
              "end_to_end_id", "amount_cents", "fee_cents", "donation_cents"]
    rows = [[line.line_no, line.uid, line.holder or "", line.iban or "", line.email or "",
             decimal_amount(line.amount), decimal_amount(line.fee), decimal_amount(line.donation),
             line.end_to_end_id, line.amount, line.fee, line.donation]
            for line in run.lines]
    return header, rows


def file_stem(run: PayoutRun) -> str:
    """The downloads' name without extension: ``payout-run-3-2025-07-21``."""
    return f"payout-run-{run.id}-{run.execution_date.isoformat()}"
