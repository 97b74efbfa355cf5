"""``kubectl ovn-gc``: one pass of the installed CronJob, run now, its report and exit code brought back.

A CI pipeline has a kubeconfig but no route to OVN Northbound, and
``kubectl create job --from=cronjob/kube-ovn-gc`` returns at once with exit 0
whatever the pass finds. This plugin creates the same Job kubectl would (the
CronJob's template, the ``cronjob.kubernetes.io/instantiate: manual``
annotation, the owner reference), with the container's arguments replaced by
the subcommand and its arguments; it waits for the pod, streams the pass's
logs to stderr, prints its report on stdout and exits with the pass's own exit
code, read from the pod's terminated container state.

Layout: ``job`` is pure (the Job, the arguments, what a pod's state means, which
log line is which); ``api`` is the HTTP adapter; ``runner`` is the orchestration;
``cli`` is click and the exit codes.
"""
