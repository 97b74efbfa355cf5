"""The one retry policy: bounded, exponential, transient errors only.

Every adapter call that may meet a flaky network goes through :func:`retrying`.
Tests set ``attempts=1`` (or ``KUBE_OVN_GC_RETRY_ATTEMPTS``) to see faults at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from .errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 10.0
    max_retry_after: float = 60.0

    def wait_seconds(self, attempt: int, exc: BaseException | None) -> float:
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return max(0.0, min(float(exc.retry_after), self.max_retry_after))
        return min(self.initial_delay * 2.0 ** (attempt - 1), self.max_delay)


def retrying(policy: RetryPolicy, what: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` until it returns, raises a non-transient error, or attempts run out.

    The last :class:`TransientError` is re-raised as it is, so callers and the
    exit-code mapping see the real cause.
    """

    def _wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return policy.wait_seconds(state.attempt_number, exc)

    def _log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s failed (attempt %d of %d): %s; retrying in %.1fs",
            what,
            state.attempt_number,
            policy.attempts,
            exc,
            state.upcoming_sleep,
        )

    retryer = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=_wait,
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=_log,
        reraise=True,
    )
    return retryer(fn)
