"""Festpay: the thin Python layer around the PostgreSQL money logic."""
