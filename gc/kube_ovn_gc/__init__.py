"""kube-ovn-gc: a single-pass garbage collector for Kube-OVN ports and IPs."""

__version__ = "0.1.0"
