"""The one retry policy: bounded, exponential, transient errors only.

Every adapter call that may meet a flaky network goes through :func:`retrying`.
Tests set ``attempts=1`` (or ``KUBE_OVN_GC_RETRY_ATTEMPTS``) to see faults at once.
"""

from __future__ import annotations

import logging
import time
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
    exit-code mapping see the real cause. The first attempt is a plain call; the
    retry machinery is built only once it has failed (most calls never do, and a
    large pass makes thousands of them).
    """
    try:
        return fn()
    except TransientError as exc:
        if policy.attempts <= 1:
            raise
        first = exc

    def _wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return policy.wait_seconds(state.attempt_number + 1, exc)

    def _log(attempt: int, exc: BaseException | None, sleep: float) -> None:
        log.warning("%s failed (attempt %d of %d): %s; retrying in %.1fs", what, attempt, policy.attempts, exc, sleep)

    delay = policy.wait_seconds(1, first)
    _log(1, first, delay)
    time.sleep(delay)
    retryer = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts - 1),  # the plain call above was attempt 1
        wait=_wait,
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=lambda state: _log(state.attempt_number + 1, state.outcome.exception() if state.outcome else None,
                                        state.upcoming_sleep),
        reraise=True,
    )
    return retryer(fn)
