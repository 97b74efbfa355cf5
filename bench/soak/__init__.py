"""The churn soak: hundreds of ``kube-ovn-gc run`` passes while a simulated kube-ovn-controller
changes the cluster (``python -m bench.soak``; see ``bench/soak/run.py`` and the README's "Soak").

- :mod:`bench.soak.ledger`: who is alive when, the planted leaks, the Subnet statuses to expect;
- :mod:`bench.soak.world`: the simulated users and kube-ovn-controller, and their faults;
- :mod:`bench.soak.audit`: what the job deleted and when (the API server's DELETEs, an OVSDB monitor);
- :mod:`bench.soak.raft`: a 3-member NB Raft cluster on loopback whose leader is killed now and then;
- :mod:`bench.soak.run`: the passes, the checks, the report and the plot;
- :mod:`bench.soak.broken`: a deliberately broken job, to prove the soak can fail.
"""

from __future__ import annotations

import bench  # noqa: F401  (puts tests/ and gc/ on the path)
