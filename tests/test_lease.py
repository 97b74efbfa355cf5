"""The one-runner Lease, against the wire-level fake API server."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from fakeapi import FakeApiServer
from kube_ovn_gc import kube
from kube_ovn_gc.errors import SafetyError, TransientError
from kube_ovn_gc.lease import Lease, LeaseHeld, LeaseLost, default_identity, format_micro_time, parse_time
from kube_ovn_gc.retry import RetryPolicy
from kube_ovn_gc.settings import KubeSettings

UTC = dt.UTC
NS = "kube-system"
ME = "gc-me"
OTHER = "gc-other"
START = dt.datetime(2026, 11, 27, 13, 0, 0, tzinfo=UTC)  # whole seconds: MicroTime must still carry .000000
NO_RETRY = RetryPolicy(attempts=1)
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Clock:
    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def client(kubeconfig: Path) -> Iterator[k8s.ApiClient]:
    with kube.api_client(KubeSettings(kubeconfig=str(kubeconfig))) as c:
        yield c


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(client: k8s.ApiClient, clock: Clock) -> Callable[..., Lease]:
    def _make(**kw: Any) -> Lease:
        kw.setdefault("identity", ME)
        kw.setdefault("retry", NO_RETRY)
        kw.setdefault("clock", clock)
        kw.setdefault("timeout", 10.0)
        return Lease(client, NS, **kw)

    return _make


def seed(server: FakeApiServer, holder: str | None, renewed: dt.datetime, *, seconds: int = 120,
         transitions: int = 3) -> dict[str, Any]:
    return server.create("leases", {
        "metadata": {"name": "kube-ovn-gc", "namespace": NS, "labels": {"team": "net"}},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                 "acquireTime": format_micro_time(renewed - dt.timedelta(minutes=1)),
                 "renewTime": format_micro_time(renewed), "leaseTransitions": transitions},
    })


def spec(server: FakeApiServer) -> dict[str, Any]:
    obj = server.get("leases", "kube-ovn-gc", NS)
    assert obj is not None
    return dict(obj["spec"])


def writes(server: FakeApiServer) -> list[str]:
    return [r.method for r in server.requests if r.method in ("POST", "PUT") and r.resource == "leases"]


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --- identity and times -------------------------------------------------------


def test_identity_is_the_pod_name_else_host_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "kube-ovn-gc-29012345-abcde")
    assert default_identity() == "kube-ovn-gc-29012345-abcde"
    monkeypatch.delenv("POD_NAME")
    monkeypatch.setattr("socket.gethostname", lambda: "node7")
    monkeypatch.setattr("os.getpid", lambda: 4242)
    assert default_identity() == "node7-4242"


def test_micro_time_round_trip() -> None:
    assert format_micro_time(START) == "2026-11-27T13:00:00.000000Z"
    moment = dt.datetime(2026, 11, 27, 14, 2, 17, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert format_micro_time(moment) == "2026-11-27T13:02:17.123456Z"
    assert parse_time("2026-11-27T13:02:17.123456Z") == moment
    assert parse_time("2026-11-27T13:02:17Z") == START.replace(minute=2, second=17)
    assert parse_time("yesterday") is None and parse_time(None) is None


# --- acquire ------------------------------------------------------------------


def test_acquire_creates_the_lease(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    lease = make()
    lease.acquire()
    assert spec(kube_api) == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 120,
        "acquireTime": "2026-11-27T13:00:00.000000Z",
        "renewTime": "2026-11-27T13:00:00.000000Z",
        "leaseTransitions": 0,
    }
    assert writes(kube_api) == ["POST"]
    assert lease.held and not lease.lost
    lease.check()


def test_held_by_another_unexpired_holder_is_refused_unchanged(
    kube_api: FakeApiServer, make: Callable[..., Lease]
) -> None:
    before = seed(kube_api, OTHER, START - dt.timedelta(seconds=60))
    with pytest.raises(LeaseHeld) as info:
        make().acquire()
    assert isinstance(info.value, SafetyError)
    assert info.value.holder == OTHER
    assert info.value.expires == START + dt.timedelta(seconds=60)
    assert "gc-other" in str(info.value) and "2026-11-27T13:01:00.000000Z" in str(info.value)
    assert kube_api.get("leases", "kube-ovn-gc", NS) == before
    assert writes(kube_api) == []


def test_holder_without_a_readable_renew_time_is_held(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    obj = seed(kube_api, OTHER, START)
    obj["spec"]["renewTime"] = "not a time"
    kube_api.put("leases", obj)
    with pytest.raises(LeaseHeld, match="never expires"):
        make().acquire()


def test_expired_lease_is_taken_over(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    seed(kube_api, OTHER, START - dt.timedelta(seconds=121))
    make().acquire()
    got = spec(kube_api)
    assert got["holderIdentity"] == ME and got["leaseTransitions"] == 4
    assert got["acquireTime"] == got["renewTime"] == "2026-11-27T13:00:00.000000Z"
    assert got["leaseDurationSeconds"] == 120
    assert kube_api.get("leases", "kube-ovn-gc", NS)["metadata"]["labels"] == {"team": "net"}  # type: ignore[index]


def test_released_lease_is_taken(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    seed(kube_api, None, START - dt.timedelta(seconds=5), seconds=1)
    make().acquire()
    got = spec(kube_api)
    assert got["holderIdentity"] == ME and got["leaseTransitions"] == 4  # as client-go counts it


def test_our_own_lease_is_taken_without_a_transition(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    seed(kube_api, ME, START - dt.timedelta(seconds=10))
    make().acquire()
    got = spec(kube_api)
    assert got["holderIdentity"] == ME and got["leaseTransitions"] == 3
    assert got["acquireTime"] == "2026-11-27T12:58:50.000000Z"  # kept
    assert got["renewTime"] == "2026-11-27T13:00:00.000000Z"


def test_writes_send_micro_times(kube_api: FakeApiServer, make: Callable[..., Lease], clock: Clock) -> None:
    lease = make()
    lease.acquire()
    clock.advance(1.5)
    lease.renew()
    lease.release()
    sent = [r.body["spec"] for r in kube_api.requests if r.method in ("POST", "PUT")]
    assert len(sent) == 3
    for body in sent:
        for key in ("acquireTime", "renewTime"):
            assert MICRO_TIME.match(body[key]), body[key]


def test_taken_between_get_and_put_is_refused(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    seed(kube_api, OTHER, START - dt.timedelta(seconds=300))

    def other_takes_it(server: FakeApiServer) -> None:
        seed_obj = server.get("leases", "kube-ovn-gc", NS)
        assert seed_obj is not None
        seed_obj["spec"].update(holderIdentity="gc-third", renewTime=format_micro_time(START))
        server.put("leases", seed_obj)

    kube_api.before("PUT", r"/leases/kube-ovn-gc", other_takes_it)
    with pytest.raises(LeaseHeld) as info:
        make().acquire()
    assert info.value.holder == "gc-third"
    assert [r.status for r in kube_api.requests if r.method == "PUT"] == [409]
    assert spec(kube_api)["holderIdentity"] == "gc-third"


def test_unrelated_change_between_get_and_put_is_read_again(
    kube_api: FakeApiServer, make: Callable[..., Lease]
) -> None:
    seed(kube_api, OTHER, START - dt.timedelta(seconds=300))

    def relabel(server: FakeApiServer) -> None:
        obj = server.get("leases", "kube-ovn-gc", NS)
        assert obj is not None
        obj["metadata"]["labels"] = {"team": "platform"}
        server.put("leases", obj)

    kube_api.before("PUT", r"/leases/kube-ovn-gc", relabel)
    make().acquire()
    assert [r.status for r in kube_api.requests if r.method == "PUT"] == [409, 200]
    assert spec(kube_api)["holderIdentity"] == ME


def test_created_by_another_runner_first_is_refused(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    kube_api.before("POST", r"/leases$", lambda server: seed(server, OTHER, START))
    with pytest.raises(LeaseHeld) as info:
        make().acquire()
    assert info.value.holder == OTHER
    assert [r.status for r in kube_api.requests if r.method == "POST"] == [409]


def test_transient_errors_are_retried_then_raised(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    kube_api.inject("GET", r"/leases/kube-ovn-gc", 503)
    make(retry=RetryPolicy(attempts=2, initial_delay=0.0)).acquire()
    assert spec(kube_api)["holderIdentity"] == ME
    kube_api.inject("GET", r"/leases/kube-ovn-gc", 503, times=None)
    with pytest.raises(TransientError):
        make(identity="gc-later").acquire()


# --- renew, check, release ----------------------------------------------------


def test_renew_moves_renew_time(kube_api: FakeApiServer, make: Callable[..., Lease], clock: Clock) -> None:
    lease = make()
    lease.acquire()
    clock.advance(40.25)
    lease.renew()
    got = spec(kube_api)
    assert got["renewTime"] == "2026-11-27T13:00:40.250000Z"
    assert got["acquireTime"] == "2026-11-27T13:00:00.000000Z" and got["leaseTransitions"] == 0
    clock.advance(100)  # 140 s after acquiring, 100 s after renewing: still ours
    lease.check()


def test_renew_after_someone_took_it_is_lost(kube_api: FakeApiServer, make: Callable[..., Lease],
                                             clock: Clock) -> None:
    lease = make()
    lease.acquire()
    obj = kube_api.get("leases", "kube-ovn-gc", NS)
    assert obj is not None
    obj["spec"]["holderIdentity"] = OTHER
    kube_api.put("leases", obj)
    with pytest.raises(LeaseLost, match="gc-other"):
        lease.renew()
    assert lease.lost and not lease.held
    with pytest.raises(LeaseLost):
        lease.check()
    lease.release()  # not ours: left alone
    assert spec(kube_api)["holderIdentity"] == OTHER


def test_renew_after_a_deleted_lease_is_lost(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    lease = make()
    lease.acquire()
    kube_api.delete("leases", "kube-ovn-gc", NS)
    with pytest.raises(LeaseLost, match="deleted"):
        lease.renew()


def test_renew_conflict_on_a_lease_still_ours_renews_again(
    kube_api: FakeApiServer, make: Callable[..., Lease], clock: Clock
) -> None:
    lease = make()
    lease.acquire()
    obj = kube_api.get("leases", "kube-ovn-gc", NS)
    assert obj is not None
    obj["metadata"]["annotations"] = {"touched": "yes"}
    kube_api.put("leases", obj)
    clock.advance(30)
    lease.renew()
    assert spec(kube_api)["renewTime"] == "2026-11-27T13:00:30.000000Z"
    assert not lease.lost


def test_check_fails_once_the_lease_expired_unrenewed(make: Callable[..., Lease], clock: Clock) -> None:
    lease = make()
    with pytest.raises(LeaseLost, match="not held"):
        lease.check()
    lease.acquire()
    clock.advance(119)
    lease.check()
    clock.advance(1)
    assert lease.lost
    with pytest.raises(LeaseLost, match="expired"):
        lease.check()


def test_release_clears_the_holder(kube_api: FakeApiServer, make: Callable[..., Lease], clock: Clock) -> None:
    lease = make()
    lease.acquire()
    clock.advance(10)
    lease.release()
    got = spec(kube_api)
    assert got["holderIdentity"] is None
    assert got["leaseDurationSeconds"] == 1
    assert got["renewTime"] == got["acquireTime"] == "2026-11-27T13:00:10.000000Z"
    assert got["leaseTransitions"] == 0
    assert not lease.held and not lease.lost
    lease.release()  # twice is harmless
    assert writes(kube_api) == ["POST", "PUT"]
    make(identity="gc-next").acquire()  # the next runner takes it at once
    assert spec(kube_api)["holderIdentity"] == "gc-next"


def test_release_failure_is_logged_not_raised(
    kube_api: FakeApiServer, make: Callable[..., Lease], caplog: pytest.LogCaptureFixture
) -> None:
    lease = make()
    lease.acquire()
    kube_api.inject("PUT", r"/leases/kube-ovn-gc", 500, times=None)
    with caplog.at_level(logging.WARNING, logger="kube_ovn_gc.lease"):
        lease.release()
    assert "could not release lease kube-system/kube-ovn-gc" in caplog.text
    assert spec(kube_api)["holderIdentity"] == ME  # it expires on its own


def test_release_does_not_clear_a_lease_taken_meanwhile(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    lease = make()
    lease.acquire()

    def other_takes_it(server: FakeApiServer) -> None:
        obj = server.get("leases", "kube-ovn-gc", NS)
        assert obj is not None
        obj["spec"]["holderIdentity"] = OTHER
        server.put("leases", obj)

    kube_api.before("PUT", r"/leases/kube-ovn-gc", other_takes_it)
    lease.release()
    assert spec(kube_api)["holderIdentity"] == OTHER


# --- the renewer thread and the context manager ---------------------------------


def test_context_manager_renews_during_a_long_pass_then_releases(
    kube_api: FakeApiServer, client: k8s.ApiClient
) -> None:
    with Lease(client, NS, identity=ME, duration=dt.timedelta(seconds=0.6), retry=NO_RETRY) as lease:
        first = parse_time(spec(kube_api)["renewTime"])
        assert first is not None
        wait_for(lambda: writes(kube_api).count("PUT") >= 2)  # renewed every 0.2 s
        renewed = parse_time(spec(kube_api)["renewTime"])
        assert renewed is not None and renewed > first
        time.sleep(0.7)  # longer than the duration: still ours thanks to the renewer
        lease.check()
        assert spec(kube_api)["leaseDurationSeconds"] == 1  # 0.6 s rounds to the 1 s the API can say
    assert spec(kube_api)["holderIdentity"] is None
    assert not any(t.name == "lease-kube-ovn-gc" for t in threading.enumerate())


def test_renewer_marks_the_lease_lost_when_someone_takes_it(
    kube_api: FakeApiServer, client: k8s.ApiClient
) -> None:
    with Lease(client, NS, identity=ME, duration=dt.timedelta(seconds=0.6), retry=NO_RETRY) as lease:
        obj = kube_api.get("leases", "kube-ovn-gc", NS)
        assert obj is not None
        obj["spec"].update(holderIdentity=OTHER, renewTime=format_micro_time(dt.datetime.now(UTC)))
        kube_api.put("leases", obj)
        wait_for(lambda: lease.lost)
        with pytest.raises(LeaseLost, match="gc-other"):
            lease.check()
    assert spec(kube_api)["holderIdentity"] == OTHER  # exit did not release someone else's lease


def test_renewer_survives_a_failed_renew(kube_api: FakeApiServer, client: k8s.ApiClient) -> None:
    kube_api.inject("PUT", r"/leases/kube-ovn-gc", 503)
    with Lease(client, NS, identity=ME, duration=dt.timedelta(seconds=1.5), retry=NO_RETRY) as lease:
        wait_for(lambda: [r.status for r in kube_api.requests if r.method == "PUT"][:2] == [503, 200])
        lease.check()


def test_enter_refused_starts_no_thread(kube_api: FakeApiServer, make: Callable[..., Lease]) -> None:
    seed(kube_api, OTHER, START)
    with pytest.raises(LeaseHeld), make():
        pytest.fail("entered a lease held by someone else")
    assert not any(t.name == "lease-kube-ovn-gc" for t in threading.enumerate())
