"""The project's own exceptions, raised at the adapter boundaries."""

from __future__ import annotations


class EscalatorError(Exception):
    """Base of every error Escalator raises on purpose."""


class DatabaseError(EscalatorError):
    """PostgreSQL could not be reached or failed the transaction; it was rolled back
    and the work can be retried."""
