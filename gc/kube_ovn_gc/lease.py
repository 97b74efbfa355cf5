"""One runner at a time: a ``coordination.k8s.io/v1`` Lease held for the length of a pass.

The Lease is taken at start (created, or taken over when it is released,
expired or already ours), renewed by a daemon thread every third of its
duration, and released at the end the way client-go's ``ReleaseOnCancel``
does: holder cleared, duration 1 s. Another runner holding an unexpired Lease
refuses the pass with :class:`LeaseHeld` (exit 4, nothing changed). A Lease
lost during the pass (someone took it, or it could not be renewed in time) is
recorded; :meth:`Lease.check` raises :class:`LeaseLost` so the pass stops
acting before its next delete.

Every write is guarded by the resourceVersion read before it, so two runners
racing for the Lease cannot both win. Expiry is judged on ``renewTime`` plus
``leaseDurationSeconds`` against this host's clock, so clocks must agree to
well within the duration.

Requests are built on the ``ApiClient`` directly with plain dict bodies: the
generated ``CoordinationV1Api`` validates a dict body into a ``V1Lease`` and
re-renders its times with ``datetime.isoformat()`` (``+00:00``, and no
fraction when the microseconds are zero), which the API server's MicroTime
parser rejects.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

from kubernetes import client as k8s

from .errors import ConflictError, FatalError, GCError, NotFoundError, SafetyError
from .kube import RawApi, parse_timestamp
from .retry import RetryPolicy, retrying

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
"""Returns the current time, timezone-aware, in UTC."""

DEFAULT_NAME: Final = "kube-ovn-gc"
DEFAULT_NAMESPACE: Final = "kube-system"
DEFAULT_DURATION: Final = dt.timedelta(seconds=120)
_API_VERSION: Final = "coordination.k8s.io/v1"
_COLLECTION: Final = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
_ITEM: Final = _COLLECTION + "/{name}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_identity() -> str:
    """``$POD_NAME`` (set by the CronJob through the downward API), else ``<hostname>-<pid>``."""
    pod = os.environ.get("POD_NAME", "").strip()
    return pod or f"{socket.gethostname()}-{os.getpid()}"


def format_micro_time(moment: dt.datetime) -> str:
    """A Kubernetes ``MicroTime``: ``2026-11-27T13:02:17.123456Z``, always six fraction digits."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> dt.datetime | None:
    """``MicroTime`` or ``Time`` as written by any client; None when absent or unreadable."""
    return parse_timestamp(value) if isinstance(value, str) and value else None


class LeaseHeld(SafetyError):
    """Another runner holds the Lease and it has not expired: the pass is refused."""

    def __init__(self, lease: str, holder: str, expires: dt.datetime | None, detail: str = "") -> None:
        if expires is not None:
            message = f"lease {lease} is held by {holder!r} until {format_micro_time(expires)}"
        else:
            message = f"lease {lease} is held by {holder!r} and has no readable renewTime, so it never expires"
        message += "; another kube-ovn-gc run is active (delete the lease if none is)"
        super().__init__(f"{message}; {detail}" if detail else message)
        self.holder = holder
        self.expires = expires


class LeaseLost(SafetyError):
    """The Lease is no longer ours (taken, deleted, or not renewed in time): stop acting."""


class Lease:
    """The ``kube-ovn-gc`` Lease, held from :meth:`acquire` to :meth:`release`.

    As a context manager it acquires on entry, renews in a daemon thread every
    ``duration / 3`` and releases on exit. Between actions the pass calls
    :meth:`check` (or reads :attr:`lost`).
    """

    def __init__(
        self,
        client: k8s.ApiClient,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        name: str = DEFAULT_NAME,
        identity: str | None = None,
        duration: dt.timedelta = DEFAULT_DURATION,
        retry: RetryPolicy | None = None,
        clock: Clock = utcnow,
        timeout: float | None = 30.0,
    ) -> None:
        seconds = round(duration.total_seconds())
        if seconds < 1:
            raise ValueError(f"lease duration must be at least 1s, not {duration}")
        self._api = RawApi(client, timeout=timeout)
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.duration = duration
        self._seconds = seconds
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._lock = threading.RLock()  # one write at a time: the renewer vs acquire / release
        self._obj: dict[str, Any] | None = None  # the Lease as we last wrote it, while we hold it
        self._renewed: dt.datetime | None = None  # renewTime of our last successful write
        self._lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def held(self) -> bool:
        """True from a successful acquire until release, loss or expiry."""
        return self._obj is not None and self._lost is None and not self._expired_locally()

    @property
    def lost(self) -> bool:
        """True once the Lease was acquired and then lost (taken, deleted, or not renewed in time)."""
        return self._lost is not None or (self._obj is not None and self._expired_locally())

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the Lease is still ours; call before each change."""
        if self._lost is not None:
            raise self._lost
        if self._obj is None:
            raise LeaseLost(f"lease {self.ref} is not held by {self.identity!r}")
        if self._expired_locally():
            raise self._lose(f"lease {self.ref} was last renewed at {self._renewed} and has expired")

    def _expired_locally(self) -> bool:
        return self._renewed is not None and self._clock() >= self._renewed + dt.timedelta(seconds=self._seconds)

    # --- acquire, renew, release -------------------------------------------

    def acquire(self) -> None:
        """Create the Lease or take it over; :class:`LeaseHeld` when someone else holds it.

        A write that meets a 409 (another runner wrote in between, or a retried
        write of our own that had landed) or a 404 reads the Lease again and
        decides once more.
        """
        with self._lock:
            for last_try in (False, True):
                current = self._read()
                try:
                    if current is None:
                        taken = self._create()
                        log.info("acquired lease %s as %s (created)", self.ref, self.identity)
                    else:
                        taken = self._take(current)
                    self._obj, self._lost = taken, None
                    self._renewed = parse_time(_spec(taken).get("renewTime"))
                    return
                except (ConflictError, NotFoundError) as exc:
                    if last_try:
                        raise LeaseHeld(self.ref, "unknown", None,
                                        f"it changed twice while we were taking it ({exc})") from exc
                    log.info("lease %s changed while we took it (%s); reading it again", self.ref, exc)

    def _take(self, current: dict[str, Any]) -> dict[str, Any]:
        """Take a released, expired or already-ours Lease with a resourceVersion-guarded PUT."""
        spec = _spec(current)
        holder = str(spec.get("holderIdentity") or "")
        now = self._clock()
        if holder and holder != self.identity:
            renewed = parse_time(spec.get("renewTime"))
            seconds = _int(spec.get("leaseDurationSeconds")) or self._seconds
            expires = renewed + dt.timedelta(seconds=seconds) if renewed else None
            if expires is None or now < expires:
                raise LeaseHeld(self.ref, holder, expires)
        transitions = _int(spec.get("leaseTransitions")) or 0
        acquired = spec.get("acquireTime")
        if holder != self.identity:  # client-go counts taking a released lease as a transition too
            transitions += 1
            acquired = format_micro_time(now)
        body = _with_spec(current, {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._seconds,
            "acquireTime": acquired or format_micro_time(now),
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        })
        taken = self._replace(body)
        if not holder:
            log.info("acquired lease %s as %s (it was released)", self.ref, self.identity)
        elif holder == self.identity:
            log.info("acquired lease %s as %s (already ours)", self.ref, self.identity)
        else:
            log.info("acquired lease %s as %s (took it over from %r, expired at %s)",
                     self.ref, self.identity, holder, spec.get("renewTime"))
        return taken

    def renew(self) -> None:
        """Move ``renewTime`` to now; :class:`LeaseLost` when the Lease is no longer ours.

        A 409 reads the Lease again: still ours (someone touched another field,
        or a retried renew of ours had landed) → renew once more; anyone
        else's → lost. Other failures are raised as they are.
        """
        with self._lock:
            self.check()
            assert self._obj is not None
            for last_try in (False, True):
                now = self._clock()
                body = _with_spec(self._obj, {"renewTime": format_micro_time(now)})
                try:
                    self._obj = self._replace(body)
                    self._renewed = now
                    log.debug("renewed lease %s as %s", self.ref, self.identity)
                    return
                except NotFoundError as exc:
                    raise self._lose(f"lease {self.ref} was deleted") from exc
                except ConflictError as exc:
                    current = self._read()
                    holder = str(_spec(current).get("holderIdentity") or "") if current else ""
                    if current is None or holder != self.identity or last_try:
                        raise self._lose(f"lease {self.ref} is now held by {holder or 'nobody'!r}") from exc
                    self._obj = current

    def _lose(self, why: str) -> LeaseLost:
        self._lost = LeaseLost(f"{why}; {self.identity!r} lost it and stops acting")
        log.error("%s", self._lost)
        return self._lost

    def release(self) -> None:
        """Clear the holder (duration 1 s) if we still hold the Lease. Failures are logged, never raised."""
        with self._lock:
            if self._obj is None or self._lost is not None:
                return
            try:
                for last_try in (False, True):
                    now = format_micro_time(self._clock())
                    body = _with_spec(self._obj, {
                        "holderIdentity": None,
                        "leaseDurationSeconds": 1,
                        "acquireTime": now,
                        "renewTime": now,
                    })
                    try:
                        self._replace(body)
                        log.info("released lease %s as %s", self.ref, self.identity)
                        return
                    except ConflictError:
                        current = self._read()
                        holder = str(_spec(current).get("holderIdentity") or "") if current else ""
                        if current is None or holder != self.identity or last_try:
                            log.warning("lease %s is no longer ours (holder %r); not releasing it",
                                        self.ref, holder)
                            return
                        self._obj = current
            except NotFoundError:
                log.info("lease %s is gone; nothing to release", self.ref)
            except GCError as exc:
                log.warning("could not release lease %s (it expires on its own): %s", self.ref, exc)
            finally:
                self._obj = None
                self._renewed = None

    # --- the renewer ---------------------------------------------------------

    def start_renewing(self) -> None:
        """Start the daemon thread that renews every ``duration / 3``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def stop_renewing(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _renew_loop(self) -> None:
        interval = self.duration.total_seconds() / 3.0
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LeaseLost:
                return
            except GCError as exc:
                # not lost yet: the Lease is ours until it expires; check() turns expiry into LeaseLost
                log.warning("could not renew lease %s: %s; trying again in %.1fs", self.ref, exc, interval)

    def __enter__(self) -> Lease:
        self.acquire()
        self.start_renewing()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_renewing()
        self.release()

    # --- requests ------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        path = _ITEM.format(namespace=self.namespace, name=self.name)
        try:
            return retrying(self._retry, f"GET {path}", lambda: self._request("GET", path))
        except NotFoundError:
            return None

    def _create(self) -> dict[str, Any]:
        now = format_micro_time(self._clock())
        body = {
            "apiVersion": _API_VERSION,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        path = _COLLECTION.format(namespace=self.namespace)
        return retrying(self._retry, f"POST {path}", lambda: self._request("POST", path, body))

    def _replace(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _ITEM.format(namespace=self.namespace, name=self.name)
        return retrying(self._retry, f"PUT {path}", lambda: self._request("PUT", path, body))

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        obj = self._api.request(method, path, body=body)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise FatalError(f"{method} {path}: the answer is not a Lease")
        return obj


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _with_spec(obj: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (metadata and resourceVersion kept, for the guard) with ``fields`` set in its spec."""
    return {**obj, "spec": {**_spec(obj), **fields}}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
