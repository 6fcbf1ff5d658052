"""Fiscal signing (SPEC §8): TR-03153 log messages, the TSE interface, a software TSE, an independent verifier.

``logmessage`` and ``software`` are the signer's side; ``verify`` re-checks along its own code path.
"""

from __future__ import annotations

from .interface import TSE, SignedLog, TseError, TseRequestError, TseUnavailable
from .software import SoftwareTSE
from .verify import VerificationError, verify_fields, verify_log_file, verify_qr

__all__ = [
    "TSE",
    "SignedLog",
    "SoftwareTSE",
    "TseError",
    "TseRequestError",
    "TseUnavailable",
    "VerificationError",
    "verify_fields",
    "verify_log_file",
    "verify_qr",
]
