"""What collectors, detectors and sinks share: config, indicator lists, process table."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sentinel.core.config import Config
from sentinel.core.names import NameMap
from sentinel.core.own import Own
from sentinel.core.proctable import ProcTable
from sentinel.core.runbook import Runbook
from sentinel.rules.intel import Intel

if TYPE_CHECKING:
    from sentinel.rules.catalogue import Catalogue
    from sentinel.rules.yara import Rules


@dataclass
class Context:
    config: Config
    intel: Intel
    procfs: str = "/proc"
    procs: ProcTable = field(init=False)
    runbook: Runbook = field(init=False)
    names: NameMap = field(init=False)
    own: Own = field(init=False)  # the agent's own processes, never reported

    def __post_init__(self) -> None:
        self.names = NameMap(self.config.traffic.map_size)
        self.procs = ProcTable(self.procfs)
        self.runbook = Runbook(self.config.runbook.jobs)
        self.own = Own.current(self.procfs)

    @cached_property
    def rules(self) -> Rules:
        """The compiled YARA rules, built on first use."""
        from sentinel.rules.yara import load_rules

        return load_rules(self.config.rule_dirs)

    @cached_property
    def catalogue(self) -> Catalogue:
        """The rule catalogue (ours, the user's directories, less disabled rules), built once."""
        from sentinel.rules import loader

        rc = self.config.rules
        return loader.load(
            self.intel, rc.dirs, rc.disable, rc.exceptions, source=self.config.source
        )
