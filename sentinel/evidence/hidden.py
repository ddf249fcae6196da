"""Load findings name the miner even when its argv is clean: the stratum URLs, pool
addresses and wallets that the process's environment (or a config file on its stdin)
names go into the evidence and the summary, read once per published finding."""

from __future__ import annotations

from sentinel.core import ownerfacts, proctable
from sentinel.core.model import Finding, same_start

DETECTORS = frozenset({"load"})


def annotate(finding: Finding, procfs: str, watched: list[str]) -> None:
    """Add `evidence.hidden` (by source) and a summary note to a load finding about a live
    process whose environment or stdin names a pool or a wallet."""
    proc = finding.process
    if finding.detector not in DETECTORS or proc is None:
        return
    times = proctable.stat_times(proc.pid, procfs)
    if times is None or not same_start(times[2], proc.start_time):
        return  # gone, or the pid is another process's now
    stdin = ownerfacts.stdin_of(procfs, proc.pid)
    hidden = ownerfacts.hidden_of(procfs, proc.pid, stdin, ownerfacts.prefixes(watched))
    if not hidden:
        return
    finding.evidence["hidden"] = {
        h.source: {
            "variables": list(h.names),
            "urls": list(h.urls),
            "pools": list(h.pools),
            "wallets": [{"kind": k, "address": a} for k, a in h.wallets],
        }
        for h in hidden
    }
    named = [*(u for h in hidden for u in h.urls), *(p for h in hidden for p in h.pools)]
    wallets = [a for h in hidden for _, a in h.wallets]
    what = named[0] if named else f"wallet {wallets[0][:12]}..."
    finding.summary += f" (names {what} in its {hidden[0].source.partition(':')[0]})"
