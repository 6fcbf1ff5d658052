"""A receipt as a page of a web site: the printable receipt of ``receipts.render_html`` with its own CSP.

Each site asks its own api function for the receipt JSON (it decides who may see which receipt); this module only
draws it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .. import receipts
from .security import CONTENT_SECURITY_POLICY

#: The printable receipt (templates/receipt.html) carries its own print stylesheet inline.
RECEIPT_CSP = CONTENT_SECURITY_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


async def receipt_response(receipt: dict[str, Any] | None) -> web.Response:
    """The receipt page of an api.receipt JSON document; a 404 without one."""
    if receipt is None:
        raise web.HTTPNotFound()
    text = await asyncio.get_running_loop().run_in_executor(None, receipts.render_html, receipt)
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": RECEIPT_CSP})
