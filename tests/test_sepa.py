"""The bank files of a payout run (python_gateway.sepa), without a database.

- the SEPA credit transfer parses, validates against the pain.001.001.03 schema, and its header (NbOfTxs, CtrlSum)
  and transfers (end-to-end ids, IBANs, amounts, execution date) are those of the lines with money to transfer;
  a line that donates everything is not in it; names are cut to SEPA's 70 characters in its character set;
- a run that transfers nothing, a wrong IBAN of a line or of the festival, a missing holder: a clear SepaError;
- the schema check really runs: a broken file is refused;
- a run's file is the same, byte for byte, however often it is made: its MsgId and PmtInfId come from the event, the
  run id and the run's creation time, its CreDtTm is the run's creation time; another run has other ids;
- the CSV lists every line with amounts in the currency and in cents;
- IBANs are read with schwifty, and the reason of a refusal is named.
"""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import date
from typing import Any
from xml.etree import ElementTree

import pytest
import xmlschema
from schwifty import IBAN

from python_gateway import sepa
from python_gateway.admin.reports import csv_text

DEBTOR = {"name": "Fest & Spiele GmbH", "iban": "DE02 1203 0000 0000 2020 51", "bic": "BYLADEM1001"}


def line(line_no: int, amount: int, *, holder: str | None = "Erika Mustermann",
         iban: str | None = "DE89370400440532013000", fee: int = 100, donation: int = 0) -> dict[str, Any]:
    return {"line_no": line_no, "uid": f"04A1B2C3D4E5{line_no:02d}", "holder": holder, "iban": iban,
            "email": f"guest{line_no}@example.org", "amount": amount, "fee": fee if amount else 0,
            "donation": donation, "end_to_end_id": f"FP-7-{line_no}", "payout_transaction_id": 100 + line_no,
            "donation_transaction_id": 200 + line_no if donation else None}


def document(*lines: dict[str, Any], debtor: dict[str, str] | None = None, run_id: int = 7,
             created_at: str = "2030-07-14T18:05:09.123456+02:00") -> dict[str, Any]:
    transfers = [x for x in lines if x["amount"] > 0]
    return {
        "run": {"id": run_id, "state": "open", "execution_date": "2030-07-21", "count": len(lines),
                "transfers": sum(x["amount"] for x in lines), "fees": sum(x["fee"] for x in transfers),
                "donations": sum(x["donation"] for x in lines), "created_at": created_at},
        "event_id": 3, "currency": "EUR", "debtor": debtor or DEBTOR, "lines": list(lines),
    }


def run_of(*lines: dict[str, Any], **kwargs: Any) -> sepa.PayoutRun:
    return sepa.run_from_document(document(*lines, **kwargs), "Sommerfest Köln")


LINES = (
    line(1, 1900, holder="Jürgen Müßig"),
    line(2, 0, holder=None, iban=None, donation=2500),  # donates everything: no transfer
    line(3, 5, iban="AT61 1904 3002 3457 3201", donation=300),
    line(4, 123456, holder="Zoë O'Brien-Łukasz & Co. " + "x" * 80, iban="NL91ABNA0417164300"),
)


def test_sepa_file_validates_and_matches_the_lines():
    run = run_of(*LINES)
    xml = sepa.sepa_xml(run)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    schema = xmlschema.XMLSchema(str(sepa.XSD))
    assert schema.is_valid(xml.decode()), list(schema.iter_errors(xml.decode()))[:3]
    summary = sepa.sepa_summary(xml)
    transfers = [x for x in LINES if x["amount"] > 0]
    assert summary["count"] == len(transfers) == 3
    assert summary["sum"] == sum(x["amount"] for x in transfers) == 125361
    assert summary["execution_dates"] == ["2030-07-21"]
    assert summary["debtor_iban"] == "DE02120300000000202051"
    assert [(t["end_to_end_id"], t["iban"], t["amount"]) for t in summary["transfers"]] == [
        ("FP-7-1", "DE89370400440532013000", 1900),
        ("FP-7-3", "AT611904300234573201", 5),
        ("FP-7-4", "NL91ABNA0417164300", 123456),
    ]
    for transfer in summary["transfers"]:
        IBAN(transfer["iban"])  # schwifty accepts every creditor IBAN of the file
        assert "Sommerfest Koeln" in transfer["remittance"] and "Auszahlung Restguthaben" in transfer["remittance"]
        assert len(transfer["remittance"]) <= 140
    names = [t["name"] for t in summary["transfers"]]
    assert names[0] == "Juergen Muessig"
    assert names[2].startswith("Zoe O'Brien-Lukasz + Co. x") and len(names[2]) == 70
    assert "FP-7-2" not in xml.decode()  # the donation-only line is in the CSV, not in the bank file


def header_ids(xml: bytes) -> tuple[str | None, str | None, list[str | None]]:
    """The file's MsgId, CreDtTm and PmtInfIds."""
    ns = {"p": sepa.NAMESPACE}
    root = ElementTree.fromstring(xml)
    return (root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId", namespaces=ns),
            root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CreDtTm", namespaces=ns),
            [x.text for x in root.iterfind("p:CstmrCdtTrfInitn/p:PmtInf/p:PmtInfId", ns)])


def test_two_files_of_the_same_run_are_identical():
    """A bank's duplicate check (MsgId, PmtInfId) catches a second upload of the same run: every download of a run
    is the same file, its ids and creation time the run's."""
    first = sepa.sepa_xml(run_of(*LINES))
    time.sleep(1.1)  # a clock in the file would show by now
    again = sepa.sepa_xml(sepa.run_from_document(document(*LINES), "Sommerfest Köln"))
    assert first == again
    msg_id, created, blocks = header_ids(first)
    assert msg_id == "FESTPAY-3-RUN-7-20300714160509" and blocks == [msg_id]
    assert created == "2030-07-14T16:05:09Z"  # the run's creation time (UTC), not the download's
    assert len(msg_id) <= sepa.MAX_ID and re.fullmatch(r"[A-Za-z0-9-]+", msg_id)
    # the same moment in another time zone (the database session's) is the same file
    assert sepa.sepa_xml(sepa.run_from_document(document(*LINES, created_at="2030-07-14T16:05:09.5+00:00"),
                                                "Sommerfest Köln")) == first


def test_another_run_has_other_ids():
    ids = {header_ids(sepa.sepa_xml(run_of(line(1, 500), **changes)))[0]
           for changes in ({}, {"run_id": 8}, {"created_at": "2030-07-14T18:05:10+02:00"})}
    assert len(ids) == 3, ids
    long_ids = sepa.run_from_document(document(line(1, 500), run_id=2**62), "E")
    next_one = sepa.run_from_document(document(line(1, 500), run_id=2**62 + 1), "E")
    assert len(sepa.message_id(long_ids)) <= sepa.MAX_ID and sepa.message_id(long_ids) != sepa.message_id(next_one)
    sepa.validate_pain001(sepa.sepa_xml(long_ids))


def test_a_run_without_its_creation_time_has_no_file():
    doc = document(line(1, 500))
    del doc["run"]["created_at"]
    with pytest.raises(sepa.SepaError, match="no creation time"):
        sepa.sepa_xml(sepa.run_from_document(doc, "E"))


def test_amounts_are_written_with_a_dot_and_two_decimals():
    xml = sepa.sepa_xml(run_of(line(1, 5), line(2, 1900), line(3, 100000)))
    text = xml.decode()
    for amount in ('Ccy="EUR">0.05<', 'Ccy="EUR">19.00<', 'Ccy="EUR">1000.00<', "<CtrlSum>1019.05</CtrlSum>"):
        assert amount in text, amount


def test_a_run_without_transfers_is_a_clear_error():
    run = run_of(line(1, 0, holder=None, iban=None, donation=700), line(2, 0, holder=None, iban=None, donation=1))
    with pytest.raises(sepa.SepaError, match="transfers no money"):
        sepa.sepa_xml(run)
    header, rows = sepa.csv_table(run)  # the CSV still lists the donations
    assert len(rows) == 2


@pytest.mark.parametrize(("changes", "message"), [
    ({"iban": "DE89370400440532013001"}, "line 1 .*IBAN is not valid: the check digits"),
    ({"iban": "DE8937040044053201300"}, "line 1 .*IBAN is not valid: an IBAN of DE has 22 characters"),
    ({"iban": "DE89-3704-0044"}, "line 1 .*only letters and digits"),
    ({"iban": None}, "line 1 .*IBAN is not valid"),
    ({"holder": "  "}, "line 1 .*no account holder"),
    ({"holder": "☺♥"}, "line 1 .*no account holder"),
])
def test_a_line_that_cannot_be_paid_is_refused(changes, message):
    with pytest.raises(sepa.SepaError, match=message):
        sepa.sepa_xml(run_of({**line(1, 500), **changes}, line(2, 700)))


@pytest.mark.parametrize(("debtor", "message"), [
    ({"name": "", "iban": "", "bic": ""}, "not set in the event settings"),
    ({"name": "Fest", "iban": "DE02120300000000202052", "bic": ""}, "festival's IBAN is not valid"),
    ({"name": "Fest", "iban": "DE02120300000000202051", "bic": "NOT A BIC"}, "does not validate"),
])
def test_the_festivals_account_must_be_valid(debtor, message):
    with pytest.raises(sepa.SepaError, match=message):
        sepa.sepa_xml(run_of(line(1, 500), debtor=debtor))


def test_without_a_bic_the_file_still_validates():
    xml = sepa.sepa_xml(run_of(line(1, 500), debtor={"name": "Fest", "iban": DEBTOR["iban"], "bic": ""}))
    assert b"<BIC>" not in xml and sepa.sepa_summary(xml)["count"] == 1


def test_the_schema_check_refuses_a_broken_file():
    good = sepa.sepa_xml(run_of(line(1, 500)))
    sepa.validate_pain001(good)
    broken = {
        "an IBAN with spaces": good.replace(b"<IBAN>DE89370400440532013000", b"<IBAN>DE89 3704 0044 0532 0130 00"),
        "a name over 140 characters": good.replace(b"<Nm>Erika Mustermann<", b"<Nm>" + b"E" * 141 + b"<"),
        "an end-to-end id over 35 characters": good.replace(b">FP-7-1<", b">" + b"F" * 36 + b"<"),
        "a negative amount": good.replace(b">5.00<", b">-5.00<"),
        "a missing IBAN": good.replace(b"<IBAN>DE89370400440532013000</IBAN>", b""),
    }
    for why, document_ in broken.items():
        assert document_ != good, why
        with pytest.raises(sepa.SepaError, match="does not validate"):
            sepa.validate_pain001(document_)
    with pytest.raises(sepa.SepaError, match="not well-formed"):
        sepa.validate_pain001(good[:-20])


def test_csv_lists_every_line_in_the_currency_and_in_cents():
    run = run_of(*LINES)
    header, rows = sepa.csv_table(run)
    assert header == ["line_no", "uid", "holder", "iban", "email", "amount_eur", "fee_eur", "donation_eur",
                      "end_to_end_id", "amount_cents", "fee_cents", "donation_cents"]
    parsed = list(csv.DictReader(io.StringIO(csv_text(header, rows))))
    assert [r["line_no"] for r in parsed] == ["1", "2", "3", "4"]
    assert parsed[0]["amount_eur"] == "19.00" and parsed[0]["fee_eur"] == "1.00" and parsed[0]["amount_cents"] == "1900"
    assert parsed[0]["holder"] == "Jürgen Müßig"  # the CSV keeps the name as typed
    assert parsed[1]["amount_eur"] == "0.00" and parsed[1]["donation_eur"] == "25.00" and parsed[1]["iban"] == ""
    assert parsed[2]["amount_eur"] == "0.05" and parsed[2]["donation_cents"] == "300"
    assert parsed[3]["amount_eur"] == "1234.56" and parsed[3]["end_to_end_id"] == "FP-7-4"
    assert sum(int(r["amount_cents"]) for r in parsed) == 125361


def test_csv_cells_that_look_like_formulas_are_defused():
    header, rows = sepa.csv_table(run_of(line(1, 500, holder="=HYPERLINK(\"http://evil\")")))
    text = csv_text(header, rows)
    assert "'=HYPERLINK" in text


@pytest.mark.parametrize(("text", "reason", "country"), [
    ("DE89370400440532013001", "checksum", "DE"),
    ("DE8937040044053201300", "length", "DE"),
    ("XX89370400440532013000", "country", "XX"),
    ("DE89 3704-0044", "characters", ""),
    ("", "characters", ""),
    ("DEAB370400440532013000", "structure", "DE"),
])
def test_check_iban_names_the_reason(text, reason, country):
    with pytest.raises(sepa.IbanError) as err:
        sepa.check_iban(text)
    assert err.value.reason == reason and err.value.country == country
    if reason == "length":
        assert (err.value.expected, err.value.actual) == (22, 21)


def test_check_iban_accepts_spaces_and_lower_case():
    assert sepa.check_iban(" de89 3704 0044 0532 0130 00 ").compact == "DE89370400440532013000"
    assert sepa.check_iban("GB82WEST12345698765432").country_code == "GB"


def test_sepa_text_keeps_the_sepa_character_set():
    assert sepa.sepa_text("Grüße aus Köln – Straße 5 & Co; <ok> @home", 70) == \
        "Gruesse aus Koeln - Strasse 5 + Co ok home"
    assert sepa.sepa_text("a" * 80, 70) == "a" * 70
    assert sepa.sepa_text(None, 70) == ""


def test_file_stem_names_run_and_date():
    assert sepa.file_stem(run_of(line(1, 500))) == "payout-run-7-2030-07-21"
    assert sepa.run_from_document(document(line(1, 500)), "E").execution_date == date(2030, 7, 21)
