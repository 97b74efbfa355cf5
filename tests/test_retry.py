"""The one retry policy: how many calls, which waits, what is logged — on plain functions, no I/O."""

from __future__ import annotations

import logging

import pytest
import tenacity

from kube_ovn_gc import retry
from kube_ovn_gc.errors import FatalError, TransientError
from kube_ovn_gc.retry import RetryPolicy, retrying

POLICY = RetryPolicy(attempts=4, initial_delay=0.5, max_delay=1.5, max_retry_after=3.0)


class Flaky:
    """Fails with the given errors, in order, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    monkeypatch.setattr(tenacity.nap.time, "sleep", slept.append)
    return slept


def test_a_call_that_works_is_called_once_and_never_sleeps(sleeps: list[float]) -> None:
    fn = Flaky()
    assert retrying(POLICY, "GET /x", fn) == "ok"
    assert (fn.calls, sleeps) == (1, [])


def test_transient_failures_are_retried_with_exponential_capped_waits(sleeps: list[float]) -> None:
    fn = Flaky(TransientError("a"), TransientError("b"), TransientError("c"))
    assert retrying(POLICY, "GET /x", fn) == "ok"
    assert fn.calls == 4
    assert sleeps == [0.5, 1.0, 1.5]  # 0.5 * 2**(n-1), capped at max_delay


def test_retry_after_is_honoured_and_capped(sleeps: list[float]) -> None:
    fn = Flaky(TransientError("429", retry_after=2.0), TransientError("429", retry_after=30.0))
    assert retrying(POLICY, "GET /x", fn) == "ok"
    assert sleeps == [2.0, 3.0]


def test_the_last_transient_error_comes_out_when_attempts_run_out(sleeps: list[float]) -> None:
    errors = [TransientError(f"try {n}") for n in range(1, 6)]
    fn = Flaky(*errors)
    with pytest.raises(TransientError) as caught:
        retrying(POLICY, "GET /x", fn)
    assert caught.value is errors[3]
    assert fn.calls == 4
    assert len(sleeps) == 3


def test_a_non_transient_error_is_not_retried(sleeps: list[float]) -> None:
    fn = Flaky(TransientError("once"), FatalError("403 forbidden"))
    with pytest.raises(FatalError, match="403"):
        retrying(POLICY, "GET /x", fn)
    assert fn.calls == 2
    assert sleeps == [0.5]


def test_one_attempt_means_no_retry(sleeps: list[float]) -> None:
    fn = Flaky(TransientError("down"))
    with pytest.raises(TransientError, match="down"):
        retrying(RetryPolicy(attempts=1), "GET /x", fn)
    assert (fn.calls, sleeps) == (1, [])


def test_each_retry_is_logged_with_its_attempt_number(sleeps: list[float], caplog: pytest.LogCaptureFixture) -> None:
    fn = Flaky(TransientError("a"), TransientError("b"))
    with caplog.at_level(logging.WARNING, logger="kube_ovn_gc.retry"):
        retrying(POLICY, "GET /x", fn)
    assert [r.getMessage() for r in caplog.records] == [
        "GET /x failed (attempt 1 of 4): a; retrying in 0.5s",
        "GET /x failed (attempt 2 of 4): b; retrying in 1.0s",
    ]
