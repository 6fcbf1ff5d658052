"""The portal's languages: German and English through gettext catalogues made with Babel.

Texts are written in English in the templates (``{{ _("...") }}``) and in Python (:func:`N_` marks them for
extraction); ``locale/de/LC_MESSAGES/messages.po`` holds the German.  The ``.po`` files are committed; they are
compiled to gettext catalogues in memory when the portal starts (:func:`catalogues`, Babel's ``write_mo``), so no
``.mo`` file has to be built, installed or kept up to date.  After changing a text::

    pybabel extract -F python_gateway/portal/babel.cfg -o python_gateway/portal/locale/messages.pot .
    pybabel update -i python_gateway/portal/locale/messages.pot -d python_gateway/portal/locale

then translate the new entries of the ``.po`` file (``tests/test_portal_http.py`` checks it is complete).

The language: the switch's cookie (``/portal/language/{de|en}``), else the browser's Accept-Language (English when it
names neither); see :func:`python_gateway.web.templating.request_locale`.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from aiohttp import web
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from ..web.formatting import LOCALES
from ..web.templating import request_locale

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"


def N_(text: str) -> str:
    """Marks a text for extraction; translated where it is shown."""
    return text


@lru_cache(maxsize=None)
def catalogues() -> dict[str, gettext.NullTranslations]:
    """One catalogue per language, compiled from the committed ``.po`` files (English is the source text)."""
    result: dict[str, gettext.NullTranslations] = {"en": gettext.NullTranslations()}
    for language in LOCALES:
        po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        if language == "en" or not po.is_file():
            continue
        with po.open("rb") as source:
            catalog = read_po(source, locale=language)
        buffer = BytesIO()
        write_mo(buffer, catalog, use_fuzzy=False)
        buffer.seek(0)
        result[language] = gettext.GNUTranslations(buffer)
    return result


def translations(request: web.Request) -> gettext.NullTranslations:
    return catalogues().get(request_locale(request)) or catalogues()["en"]


def gettext_of(request: web.Request):  # noqa: ANN201 (a callable)
    return translations(request).gettext


def page_context(request: web.Request) -> dict[str, Any]:
    """``_``, ``gettext``, ``ngettext`` for the page's language, and the language switch."""
    t = translations(request)
    current = request_locale(request)
    return {"_": t.gettext, "gettext": t.gettext, "ngettext": t.ngettext, "language": current,
            "other_languages": [code for code in LOCALES if code != current]}
