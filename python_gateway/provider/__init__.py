"""The payment provider of online top-ups.

- :mod:`.interface`: the :class:`~.interface.PaymentProvider` protocol and its result types,
- :mod:`.http_client`: :class:`~.http_client.HttpProvider`, the protocol over HTTP to a provider with the
  simulated provider's API,
- :mod:`.sim`: the simulated provider (``festpay provider-sim``), a test double of the outside world.

The webhook signature scheme lives in :mod:`python_gateway.signing`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..config import Settings

SECRET_FILE = "provider-secret"


def webhook_secret(settings: Settings) -> str:
    """The shared webhook secret: FESTPAY_PROVIDER_SECRET, else DATA_DIR/provider-secret (generated once, 0600).

    Creating the file is race-free (O_EXCL), so the simulated provider and the gateway agree on one secret.
    """
    if settings.provider_secret:
        return settings.provider_secret
    return _secret_file(settings.data_dir / SECRET_FILE)


def _secret_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if not secret:
            raise ValueError(f"{path} is empty; delete it to generate a new provider secret") from None
        return secret
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret
