"""Load findings name the miner even when its argv is clean: the stratum URLs, pool
addresses and wallets that the process's environment (or a config file on its stdin)
names go into the evidence and the summary, read once per published finding."""

from __future__ import annotations

from sentinel.core import ownerfacts, proctable
from sentinel.core.model import Finding, same_start
from sentinel.rules.indicators import as_evidence

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
    finding.evidence["hidden"] = as_evidence(hidden)
    pools = [(x, h.source) for h in hidden for x in (*h.urls, *h.pools)]
    wallets = [(f"wallet {a[:12]}...", h.source) for h in hidden for _, a in h.wallets]
    what, source = (pools or wallets)[0]
    finding.summary += f" (names {what} in its {source.partition(':')[0]})"
