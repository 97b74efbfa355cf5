"""The job's own error types; adapters translate library errors into these.

Retries key on :class:`TransientError`, exit codes on the class of the error
that ended the pass. Always chain with ``raise ... from exc``.
"""

from __future__ import annotations


class GCError(Exception):
    """Base of every error the job raises on purpose."""


class TransientError(GCError):
    """Worth another try: connection refused/reset, timeout, 429, 5xx, NB member down."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFoundError(GCError):
    """The object is not there (404, missing row). For a delete this is success."""


class ConflictError(GCError):
    """A precondition or resourceVersion did not hold (409, OVSDB wait failed)."""


class FatalError(GCError):
    """Not worth retrying: 401/403/422, malformed answers, schema mismatch."""


class ConfigError(GCError):
    """Bad settings: unreadable kubeconfig, bad NB remote, missing TLS files."""


class SafetyError(GCError):
    """A safety rail refused the pass; nothing was changed."""
