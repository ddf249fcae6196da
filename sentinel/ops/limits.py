"""Process limits the agent sets for itself at start."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("sentinel")


def set_open_files(want: int) -> int:
    """Set RLIMIT_NOFILE's soft limit to `want` (and the hard one, if root may raise it);
    returns the soft limit in force. A lower hard limit is logged and kept."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            log.warning("open files: hard limit %d below agent.max_open_files %d", hard, want)
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want
