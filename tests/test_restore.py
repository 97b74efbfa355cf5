"""Restore's reading of a report and its cluster check: plain data, no I/O but the report file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kube_ovn_gc import restore
from kube_ovn_gc.errors import ConfigError, ReportRefused
from kube_ovn_gc.model import ClusterIdentity

HERE = ClusterIdentity("ks-uid-1", "https://10.0.0.1:6443")
UNDO = [{"kind": "ip", "name": "vm-a.default", "manifest": {"metadata": {"name": "vm-a.default"}}}]


def written(tmp_path: Path, **report: object) -> Path:
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"undo": UNDO, **report}))
    return path


def test_a_report_is_restored_into_the_cluster_it_records_whatever_url_reaches_it(tmp_path: Path) -> None:
    loaded = restore.load(written(tmp_path, cluster={"uid": "ks-uid-1", "server": "https://lb.example:6443"}))
    assert loaded.cluster == ClusterIdentity("ks-uid-1", "https://lb.example:6443")
    assert [e.name for e in loaded.entries] == ["vm-a.default"]
    assert restore.check_cluster("run.json", loaded.cluster, HERE) is None


def test_a_report_of_another_cluster_is_refused(tmp_path: Path) -> None:
    loaded = restore.load(written(tmp_path, cluster={"uid": "ks-uid-2", "server": "https://10.9.0.1:6443"}))
    with pytest.raises(ReportRefused, match=r"run\.json was made on another cluster: namespace kube-system uid "
                                            r"ks-uid-2 .*this one is ks-uid-1"):
        restore.check_cluster("run.json", loaded.cluster, HERE)


def test_a_recorded_cluster_that_cannot_be_checked_is_refused(tmp_path: Path) -> None:
    loaded = restore.load(written(tmp_path, cluster={"uid": "ks-uid-1", "server": ""}))
    with pytest.raises(ReportRefused, match=r"cannot tell whether run\.json was made on this cluster"):
        restore.check_cluster("run.json", loaded.cluster, ClusterIdentity(None, HERE.server))


@pytest.mark.parametrize("cluster", [None, {"uid": None, "server": "https://10.0.0.1:6443"}])
def test_a_report_that_records_no_cluster_is_restored_with_a_warning(tmp_path: Path, cluster: object) -> None:
    report = {} if cluster is None else {"cluster": cluster}
    loaded = restore.load(written(tmp_path, **report))
    assert loaded.cluster is None
    warning = restore.check_cluster("run.json", loaded.cluster, HERE)
    assert warning is not None and "does not record which cluster" in warning and HERE.server in warning


def test_a_cluster_uid_that_is_not_a_uid_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cluster.uid 42 is not a uid"):
        restore.load(written(tmp_path, cluster={"uid": 42}))
