"""Reading submitted forms: text, whole numbers, money, yes/no and local times, each by its field name.

Parsing is the only check here (is it a number at all?); what a value may be is the database's rule.  A field that
does not parse raises the ``validation`` problem with ``{"field": name}``, as the database's own field errors do,
so the page shows the message next to that field.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from ..gateway.problems import Problem

BIGINT_MAX = 2**63 - 1
#: The range of an SQL ``integer`` parameter: a whole-number field passed to one is read with these bounds, so the
#: call always matches the function's signature.
INTEGER_MIN = -(2**31)
INTEGER_MAX = 2**31 - 1
MAX_TEXT = 12_000_000  # characters; the whole body is at most MAX_BODY bytes anyway
_MONEY = re.compile(r"(-?)(\d{1,16})(?:[.,](\d{1,2}))?")
_WHOLE = re.compile(r"-?\d{1,19}")


def field_error(field: str, message: str) -> Problem:
    """The ``validation`` problem of one form field."""
    return Problem("validation", message, {"field": field})


class Form:
    """A submitted form (``application/x-www-form-urlencoded`` or multipart), or a query string."""

    def __init__(self, data: MultiDictProxy[Any]):
        self.data = data

    def raw(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):  # an uploaded file
            value.file.seek(0)
            value = value.file.read(MAX_TEXT + 1).decode("utf-8", "replace")
            if len(value) > MAX_TEXT:
                raise field_error(name, "This file is too large.")
            return value
        if len(value) > MAX_TEXT or "\x00" in value:
            raise field_error(name, "This value is too long or holds a NUL character.")
        return value

    def text(self, name: str, *, required: bool = False, strip: bool = True) -> str | None:
        """The field's text (stripped); None when it is missing or blank, unless ``required``."""
        value = self.raw(name)
        if value is not None and strip:
            value = value.strip()
        if not value:
            if required:
                raise field_error(name, "Please fill in this field.")
            return None
        return value

    def secret(self, name: str) -> str:
        """A password as typed (not stripped); empty when missing."""
        return self.raw(name) or ""

    def whole(self, name: str, *, required: bool = False, minimum: int = -BIGINT_MAX,
              maximum: int = BIGINT_MAX) -> int | None:
        """A whole number from ``minimum`` to ``maximum`` (default: the bigint range; ``INTEGER_MIN`` and
        ``INTEGER_MAX`` for an SQL ``integer`` parameter)."""
        value = self.text(name, required=required)
        if value is None:
            return None
        if not _WHOLE.fullmatch(value) or abs(int(value)) > BIGINT_MAX:
            raise field_error(name, "Please enter a whole number.")
        number = int(value)
        if number > maximum:
            raise field_error(name, f"Please enter a whole number up to {maximum:,}.")
        if number < minimum:
            raise field_error(name, f"Please enter a whole number of at least {minimum:,}.")
        return number

    def money(self, name: str, *, required: bool = False) -> int | None:
        """An amount typed in currency units (``12``, ``12.5``, ``12,50``) as integer cents."""
        value = self.text(name, required=required)
        if value is None:
            return None
        match = _MONEY.fullmatch(value.replace(" ", ""))
        if not match:
            raise field_error(name, "Please enter an amount like 12.50.")
        sign, whole, frac = match.groups()
        cents = int(whole) * 100 + int((frac or "0").ljust(2, "0"))
        return -cents if sign else cents

    def decimal(self, name: str, *, required: bool = False) -> Decimal | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        try:
            number = Decimal(value.replace(",", "."))
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or abs(number) > 10**12:
            raise field_error(name, "Please enter a number.")
        return number

    def flag(self, name: str) -> bool:
        """A checkbox: ticked when the field was sent with any value but ``0``/``false``/empty."""
        value = self.text(name)
        return value is not None and value.lower() not in ("0", "false", "off", "no")

    def local_time(self, name: str, tz: tzinfo) -> datetime | None:
        """An ``<input type="datetime-local">`` (or ISO 8601) value, read in the event's time zone."""
        value = self.text(name)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise field_error(name, "Please enter a date and time like 2025-07-01T18:00.") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)

    def choice(self, name: str, choices: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        if value is not None and value not in choices:
            raise field_error(name, "Please choose one of the offered values.")
        return value

    def as_dict(self, *, without: tuple[str, ...] = ()) -> dict[str, str]:
        """The submitted text values (not files, not the fields named in ``without``), for refilling a form."""
        return {k: v for k, v in self.data.items() if isinstance(v, str) and k not in without}


async def read_form(request: web.Request) -> Form:
    """The request's form body (cached by aiohttp: reading it twice is free)."""
    return Form(await request.post())


def query(request: web.Request) -> Form:
    """The request's query string, read like a form."""
    return Form(request.query)
