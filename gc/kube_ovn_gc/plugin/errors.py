"""The plugin's own failures. Each says what to do; ``cli`` maps each class to its own exit code
(10-19: never one of the pass's own 0-5)."""

from __future__ import annotations

from ..errors import GCError


class PluginError(GCError):
    """Base: something kept the plugin from bringing back a pass's report and exit code."""


class UsageError(PluginError):
    """Unknown subcommand, a bad option."""


class ClusterError(PluginError):
    """The kubeconfig cannot be used, or the API server cannot be reached or answered unexpectedly."""


class CronJobNotFound(PluginError):
    """No CronJob of that name in that namespace."""


class NoContainer(PluginError):
    """The CronJob's pod template has no container of the expected name."""


class Forbidden(PluginError):
    """RBAC refused a request; the message names the missing rule."""


class JobExists(PluginError):
    """A Job of the chosen name already exists."""


class NotStarted(PluginError):
    """The pod never started: image pull failure, bad container config, or the Job failed first."""


class Timeout(PluginError):
    """The pass did not end in time; the Job is left in place."""


class LogsUnavailable(PluginError):
    """The pass ran, but its log (and so its report) could not be read."""


class PodLost(PluginError):
    """The pod was evicted, deleted or killed before the pass ended."""


class Interrupted(PluginError):
    """Ctrl-C while the pass ran; the Job is left in place."""
