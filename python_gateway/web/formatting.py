"""Money, numbers and times as a page shows them: Babel, in the event's currency and time zone, in German or
English as the browser's Accept-Language prefers (English when it names neither)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, dates, numbers

LOCALES = ("en", "de")
DEFAULT_LOCALE = "en"


def negotiate_locale(accept_language: str | None) -> str:
    """``de`` or ``en``: the first of the two the Accept-Language header names, by its q-values."""
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = tag.strip().split("-")[0].lower()
        if language in LOCALES and quality > 0:
            choices.append((-quality, index, language))
    return min(choices)[2] if choices else DEFAULT_LOCALE


def zone(name: str | None) -> tzinfo:
    """The IANA time zone ``name`` (UTC when it is unset or unknown)."""
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def as_datetime(value: Any) -> datetime | None:
    """A timestamptz as psycopg returns it, or as ISO 8601 text inside jsonb."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Formatter:
    """Formats for one page: its locale, the event's currency and time zone."""

    locale: str = DEFAULT_LOCALE
    currency: str = "EUR"
    time_zone: str = "UTC"

    @property
    def tz(self) -> tzinfo:
        return zone(self.time_zone)

    def money(self, cents: Any) -> str:
        """Integer cents in the event's currency: ``€1,234.50`` / ``1.234,50 €``; empty for None."""
        if cents is None or cents == "":
            return ""
        return numbers.format_currency(Decimal(int(cents)) / 100, self.currency, locale=self.locale)

    def amount(self, cents: Any) -> str:
        """Integer cents as a plain decimal for a form field (``12.50``; ``12,50`` in German), no currency, no
        grouping; :meth:`python_gateway.web.forms.Form.money` reads either separator back."""
        if cents is None or cents == "":
            return ""
        value = int(cents)
        sign = "-" if value < 0 else ""
        whole, frac = divmod(abs(value), 100)
        return f"{sign}{whole}{numbers.get_decimal_symbol(self.locale)}{frac:02d}"

    def number(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        return numbers.format_decimal(Decimal(str(value)), locale=self.locale)

    def percent(self, value: Any) -> str:
        """A VAT rate given in percent (``19``, ``7.0``, ``19.00``) as the locale writes it: ``19%`` / ``19 %``,
        ``7.5%`` / ``7,5 %`` (no trailing zeros)."""
        if value is None or value == "":
            return ""
        return numbers.format_percent(Decimal(str(value)) / 100, locale=self.locale, decimal_quantization=False)

    def plain(self, value: Any) -> str:
        """A decimal as the value of a form field: ``19.00`` -> ``19``, ``7.50`` -> ``7.5`` (dot, no grouping)."""
        if value is None or value == "":
            return ""
        number = Decimal(str(value))
        text = format(number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize(),
                      "f")
        return text

    @staticmethod
    def yes_no(value: Any) -> str:
        """A boolean as ``yes`` / ``no`` (empty for None)."""
        if value is None or value == "":
            return ""
        return "yes" if value else "no"

    def count(self, value: Any, singular: str, plural: str) -> str:
        """A number with its noun: ``1 tag``, ``1,200 tags`` (the page's texts are English)."""
        n = int(value or 0)
        return f"{self.number(n)} {singular if n == 1 else plural}"

    def time(self, value: Any) -> str:
        """A timestamp in the event's time zone, date and time to the second."""
        moment = as_datetime(value)
        if moment is None:
            return ""
        return dates.format_datetime(moment, "medium", tzinfo=self.tz, locale=self.locale)

    def clock_seconds(self, value: Any) -> str:
        """The time of day to the second (``14:05:09`` / ``2:05:09 PM``) in the event's time zone."""
        moment = as_datetime(value)
        if moment is None:
            return ""
        return dates.format_time(moment, "medium", tzinfo=self.tz, locale=self.locale)

    def iso(self, value: Any) -> str:
        """A timestamp as ISO 8601 in the event's time zone, with its offset (``2025-07-01T14:00:00+02:00``):
        for files that programs read."""
        moment = as_datetime(value)
        if moment is None:
            return ""
        return moment.astimezone(self.tz).isoformat()

    def date(self, value: Any) -> str:
        moment = as_datetime(value)
        if moment is None:
            return ""
        return dates.format_date(moment.astimezone(self.tz), "medium", locale=self.locale)

    def clock(self, value: Any) -> str:
        """Only the time of day (``14:05``) in the event's time zone."""
        moment = as_datetime(value)
        if moment is None:
            return ""
        return dates.format_time(moment, "short", tzinfo=self.tz, locale=self.locale)

    def local_input(self, value: Any) -> str:
        """A timestamp as the value of an ``<input type="datetime-local">`` in the event's time zone."""
        moment = as_datetime(value)
        if moment is None:
            return ""
        return moment.astimezone(self.tz).strftime("%Y-%m-%dT%H:%M")

    def duration_ms(self, value: Any) -> str:
        """Milliseconds as a short duration (``3 s``, ``2 min``)."""
        if value is None or value == "":
            return ""
        return dates.format_timedelta(int(value) / 1000, threshold=1.0, format="short", locale=self.locale)

    @property
    def currency_symbol(self) -> str:
        return numbers.get_currency_symbol(self.currency, locale=self.locale)

    @property
    def language(self) -> str:
        return Locale.parse(self.locale).language
