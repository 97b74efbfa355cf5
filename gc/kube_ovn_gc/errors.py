"""The job's own error types; adapters translate library errors into these.

Retries key on :class:`TransientError`, exit codes on the class of the error
that ended the pass. Always chain with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping


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


class ReportRefused(ConfigError):
    """``run --from-report``: the file is not a fresh check report of this cluster (stale, from another
    cluster, not a check report, malformed). Refused before anything is read or changed: exit 2."""


class SafetyError(GCError):
    """A safety rail refused the pass; nothing was changed."""


class IncompleteError(GCError):
    """A batched write stopped part-way. ``settled`` maps the objects whose outcome is known
    (done before the failure, or found gone after it) to that outcome; ``uncertain`` names
    those whose write was sent but never answered and could not be looked up again: they
    may or may not have been written. Every other object of the call was left as it was."""

    def __init__(self, message: str, settled: Mapping[str, str], uncertain: Collection[str] = ()) -> None:
        super().__init__(message)
        self.settled = dict(settled)
        self.uncertain = frozenset(uncertain)
