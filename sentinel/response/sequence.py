"""Run a plan's actions in order (freeze, forensics, egress, kill, quarantine, revoke).

Blocking code, meant for a worker thread. Each action becomes a `Step` and, through
`record`, a `response.<action>` finding; `on_step` hears of each step as it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel.core.config import RESPONSE_ACTIONS, Config
from sentinel.core.model import Category, Finding
from sentinel.response import forensics, quarantine
from sentinel.response.egress import Nft, NftError, cgroup_match, sink_addresses
from sentinel.response.freeze import Frozen, cgroup_mounts, find_cgroup, freeze, stop_tree
from sentinel.response.freeze import freeze_cgroup as freeze_group
from sentinel.response.kill import kill
from sentinel.response.policy import Plan, parse_scope, remote
from sentinel.response.targets import Guard, cgroups_of, descendants, resolve_uid, scope_members

log = logging.getLogger("sentinel.response")
FLUSH_WAIT = 2.0  # seconds forensics waits for the recorder to write the tree's last events
GONE = frozenset({"gone", "exited", "identity changed", "identity changed before the decision"})
VERBS = {
    "freeze": "froze",
    "forensics": "snapshotted",
    "egress": "cut egress of",
    "kill": "killed",
    "quarantine": "quarantined files of",
    "revoke": "ran on_contain for",
}


@dataclass
class Step:
    """One action's outcome: done, failed, planned (dry-run) or skipped."""

    action: str
    result: str
    pids: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    method: str = ""
    detail: str = ""
    duration: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result in ("done", "planned", "skipped")


def record(step: Step, plan: Plan) -> Finding:
    """The `response.<action>` finding for one step."""
    verb = VERBS[step.action] if step.result != "planned" else f"would have {VERBS[step.action]}"
    what = f"{len(step.pids)} process(es) of incident" if step.pids else "incident"
    summary = f"response {step.result}: {verb} {what} {plan.incident}"
    if step.detail:
        summary += f": {step.detail}"
    return Finding(
        rule=f"response.{step.action}",
        category=Category.INTEGRITY,
        severity=plan.severity,
        summary=summary[:500],
        detector="response",
        process=plan.trigger.process if plan.trigger else None,
        evidence={
            "incident": plan.incident,
            "action": step.action,
            "result": step.result,
            "mode": "dry-run" if plan.dry_run else "enforce",
            "method": step.method,
            "pids": step.pids,
            "skipped": {str(k): v for k, v in step.skipped.items()},
            "detail": step.detail,
            "duration_ms": round(step.duration * 1000, 2),
            **step.extra,
        },
        subject=f"response:{plan.incident}:{step.action}",
    )


class Sequence:
    """The steps for one configuration; `nft` can be replaced (tests enter a netns)."""

    def __init__(
        self,
        cfg: Config,
        *,
        nft: Nft | None = None,
        on_step: Callable[[Step], None] | None = None,
        flush: Callable[[float], object] | None = None,
    ) -> None:
        self.cfg = cfg
        self.flush = flush  # waits for the flight recorder's queue to be written
        self.rc = cfg.response
        self.nft = nft or Nft([self.rc.nft])
        self.on_step = on_step or (lambda step: None)
        self.state_dir = cfg.agent.state_dir
        self.scope = parse_scope(self.rc.scope)

    def guard(self, plan: Plan) -> Guard:
        admins = set()
        for user in self.rc.admin_users:
            try:
                admins.add(resolve_uid(user))
            except ValueError:
                log.warning("response.admin_users: unknown user %r is not protected", user)
        return Guard(scope=plan.whole_scope or self.scope, admin_uids=frozenset(admins))

    def run(self, plan: Plan) -> list[Step]:
        """Every action of the plan, in order; one failing step does not stop the rest."""
        steps: list[Step] = []
        frozen: Frozen | None = None
        files: quarantine.Found = quarantine.Found()
        state: dict[str, Any] = {
            "incident": plan.incident,
            "time": time.time(),
            "roots": [r.pid for r in plan.roots],
            "scope": {"kind": scope.kind, "value": scope.value}
            if (scope := plan.whole_scope)
            else None,
        }
        for action in RESPONSE_ACTIONS:
            if action not in plan.actions and not (action == "freeze" and _needs_pins(plan)):
                continue
            start = time.perf_counter()
            try:
                if action == "freeze":
                    step, frozen = self._freeze(plan)
                    pids = [i.pid for i in frozen.idents] if frozen else step.pids
                    facts = {pid: forensics.describe(pid) for pid in pids}
                    files = quarantine.found(facts)  # while the tree is held
                    if frozen is not None and frozen.held and "freeze" in plan.actions:
                        state["freeze"] = _freeze_state(frozen)
                elif action == "forensics":
                    step = self._forensics(plan, frozen)
                elif action == "egress":
                    step = self._egress(plan, frozen)
                    if "cut" in step.extra:
                        state["egress"] = step.extra["cut"]
                elif action == "kill":
                    step = self._kill(plan, frozen)
                elif action == "quarantine":
                    step = self._quarantine(plan, files)
                else:
                    step = self._revoke(plan)
            except Exception as exc:
                step = Step(action, "failed", detail=f"{type(exc).__name__}: {exc}")
            step.duration = time.perf_counter() - start
            steps.append(step)
            self.on_step(step)
        if frozen is not None:
            frozen.close()
        if not plan.dry_run and ("freeze" in state or "egress" in state):
            save_state(self.state_dir, state)
        return steps

    # steps
    def _freeze(self, plan: Plan) -> tuple[Step, Frozen | None]:
        guard = self.guard(plan)
        scope = plan.whole_scope
        if plan.dry_run:
            pids = scope_members(scope) if scope else descendants([r.pid for r in plan.roots])
            skipped = {p: why for p in pids if (why := guard.refuse(p))}
            chosen = [p for p in pids if p not in skipped]
            result = "planned" if "freeze" in plan.actions else "skipped"
            return Step("freeze", result, chosen, {**plan.skipped, **skipped}), None
        if "freeze" not in plan.actions:  # the other steps still need the tree pinned
            frozen = stop_tree(plan.roots, guard, scope_walk=scope is not None, stop=False)
            detail = f"not in the policy's actions: {len(frozen.held)} pinned, not stopped"
            return Step(
                "freeze", "skipped", sorted(frozen.held), frozen.skipped, frozen.method, detail
            ), frozen
        if scope is not None and scope.kind == "cgroup" and (cg := find_cgroup(scope.value)):
            frozen = freeze_group(cg, guard)
            if not frozen.ok:
                frozen = stop_tree([], guard, scope_walk=True)
        elif scope is not None:
            frozen = stop_tree([], guard, scope_walk=True)
        else:
            frozen = freeze(plan.roots, guard)
        skipped = {**plan.skipped, **frozen.skipped}
        result = "done" if frozen.ok and frozen.held else "failed"
        if not frozen.held and skipped and all(w in GONE for w in skipped.values()):
            result = "skipped"  # it exited or exec'd something else: nothing left to act on
        detail = frozen.detail or ("" if frozen.held else "no process to freeze")
        step = Step(
            "freeze",
            result,
            sorted(frozen.held),
            skipped,
            frozen.method,
            detail,
            extra={"rounds": frozen.rounds},
        )
        return step, frozen

    def _forensics(self, plan: Plan, frozen: Frozen | None) -> Step:
        root = os.path.join(self.state_dir, "forensics")
        if plan.dry_run:
            return Step("forensics", "planned", detail=f"to {os.path.join(root, plan.incident)}")
        if frozen is None or not frozen.held:
            return Step("forensics", "skipped", detail="nothing frozen to snapshot")
        pids = set(frozen.held)
        records = [r for r in plan.records if _about(r, pids) or r.get("id") == plan.incident]
        bundle = forensics.snapshot(
            root,
            plan.incident,
            frozen.idents,
            records,
            budget=self.rc.forensics_budget,
            total_budget=self.rc.forensics_total,
            exe_copy_max=self.rc.exe_copy_max,
            timeline=self._timeline(plan),
        )
        extra = {"path": bundle.path, "bytes": bundle.size, "files": len(bundle.files)}
        if bundle.dropped:
            extra["dropped"] = bundle.dropped[:50]
        if bundle.pruned:
            extra["pruned"] = bundle.pruned
        detail = f"{len(bundle.dropped)} item(s) over budget" if bundle.dropped else ""
        return Step("forensics", "done", sorted(pids), method="procfs", detail=detail, extra=extra)

    def _timeline(self, plan: Plan) -> list[dict[str, Any]] | None:
        """The trigger's tree timeline, as `sentinel timeline --incident` prints it."""
        trigger = plan.trigger
        if trigger is None or trigger.process is None:
            return None
        from sentinel.evidence import recorder, timeline

        if self.flush is not None and self.cfg.evidence.recorder:
            self.flush(FLUSH_WAIT)
        db = recorder.db_path(self.state_dir)
        try:
            entries = timeline.of_incident(
                db, self.cfg.alert_log, trigger.to_record(), redact=forensics.redact_argv
            )
        except (OSError, ValueError, sqlite3.Error) as exc:
            log.warning("forensics: no timeline for incident %s: %s", plan.incident, exc)
            return None
        return [e.to_record() for e in entries]

    def _targets(
        self, plan: Plan, frozen: Frozen | None
    ) -> tuple[list[int], list[tuple[str, int]], list[str]]:
        scope = plan.whole_scope or self.scope
        uids: list[int] = []
        groups: list[tuple[str, int]] = []
        v2 = cgroup_mounts().get("v2")
        if scope.kind == "user":
            uids.append(resolve_uid(scope.value))
        elif (
            scope.kind == "cgroup"
            and v2
            and os.path.isdir(os.path.join(v2, scope.value.lstrip("/")))
        ):
            groups.append(cgroup_match(v2, scope.value))
        elif scope.kind == "unit" and v2 and frozen is not None:
            for pid in frozen.held:
                path = cgroups_of(pid).get("", "")
                parts = path.split("/")
                if scope.value in parts:
                    unit = "/".join(parts[: parts.index(scope.value) + 1])
                    if cgroup_match(v2, unit) not in groups:
                        groups.append(cgroup_match(v2, unit))
        dests = set(plan.destinations)
        tables = forensics.Sockets()
        for pid in frozen.held if frozen else ():
            for sock in tables.of(pid).values():
                host = sock["remote"].rsplit(":", 1)[0]
                if remote(host):
                    dests.add(host)
        return uids, groups, sorted(dests)

    def _egress(self, plan: Plan, frozen: Frozen | None) -> Step:
        uids, groups, dests = self._targets(plan, frozen)
        what = {"uids": uids, "cgroups": [g for g, _ in groups], "destinations": dests}
        if not (uids or groups or dests):
            return Step("egress", "skipped", detail="no scope and no remote address to cut")
        if plan.dry_run:
            return Step("egress", "planned", method="nftables", extra=what)
        allow = sink_addresses([s.url for s in self.cfg.sinks if s.url])
        try:
            cut = self.nft.cut(
                plan.incident,
                uids=uids,
                cgroups=groups,
                destinations=dests,
                allow=allow,
                timeout=self.rc.block_timeout,
            )
        except NftError as exc:
            return Step("egress", "failed", method="nftables", detail=str(exc), extra=what)
        pids = sorted(frozen.held) if frozen else []
        return Step("egress", "done", pids, method="nftables", extra={"cut": cut.to_record()})

    def _kill(self, plan: Plan, frozen: Frozen | None) -> Step:
        if plan.dry_run:
            return Step("kill", "planned", detail="SIGKILL or cgroup.kill after the freeze")
        if frozen is None or not frozen.held:
            return Step("kill", "skipped", detail="nothing frozen to kill")
        if frozen.cgroup is None:
            # a SIGSTOP is undone by any process of the same user (a sibling outside the
            # tree sends SIGCONT), and a bare pin stops nothing: stop the tree again,
            # holding what it forked since, so that nothing it made outlives the kill
            again = stop_tree(
                frozen.idents, self.guard(plan), scope_walk=plan.whole_scope is not None
            )
            for pid, held in again.held.items():
                if pid in frozen.held:
                    held.close()
                else:
                    frozen.held[pid] = held
        out = kill(frozen)
        return Step(
            "kill", "done" if out.ok else "failed", out.killed, out.skipped, out.method, out.detail
        )

    def _quarantine(self, plan: Plan, found: quarantine.Found) -> Step:
        packages = quarantine.Packages()
        wanted = {p: quarantine.Artifact("dropped file") for p in plan.files}
        wanted.update(found.files)  # a process's file keeps its identity and owner checks
        left = list(found.left)
        todo: list[tuple[str, quarantine.Artifact]] = []
        for path, art in wanted.items():
            if why := quarantine.refuse(path, packages):
                left.append({"path": path, "why": why})
            else:
                todo.append((path, art))
        if plan.dry_run:
            left = _unique(left)
            return Step(
                "quarantine", "planned", extra={"files": [p for p, _ in todo], "left": left}
            )
        vault = quarantine.Vault(os.path.join(self.state_dir, "quarantine"))
        done, failed = [], []
        for path, art in todo:
            try:
                entry = vault.put(
                    path,
                    plan.incident,
                    self.rc.quarantine_max,
                    same_as=art.same_as,
                    owner=art.owner,
                    total=self.rc.quarantine_total,
                )
                done.append({**entry.to_record(), "role": art.role})
            except quarantine.Refused as exc:
                left.append({"path": path, "why": str(exc)})
            except quarantine.QuarantineError as exc:
                failed.append(str(exc))
        extra = {"files": done, "left": _unique(left), "errors": failed}
        if not done and not failed:
            return Step("quarantine", "skipped", detail="no file to quarantine", extra=extra)
        return Step(
            "quarantine", "failed" if failed else "done", detail="; ".join(failed), extra=extra
        )

    def _revoke(self, plan: Plan) -> Step:
        argv = [a.replace("{incident}", plan.incident) for a in self.rc.on_contain]
        if not argv:
            return Step("revoke", "skipped", detail="no on_contain command configured")
        if plan.dry_run:
            return Step("revoke", "planned", method=argv[0])
        # its own session: on timeout the whole group goes, and a child it left behind
        # holding the stderr pipe cannot keep this worker waiting for EOF
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return Step("revoke", "failed", method=argv[0], detail=exc.strerror or str(exc))
        with proc:
            try:
                _, err = proc.communicate(timeout=self.rc.on_contain_timeout)
            except subprocess.TimeoutExpired:
                err = b""
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return Step(
                        "revoke",
                        "failed",
                        method=argv[0],
                        detail=f"timed out after {self.rc.on_contain_timeout}s",
                    )
        tail = err.decode("utf-8", "replace")[-300:]
        result = "done" if proc.returncode == 0 else "failed"
        return Step(
            "revoke",
            result,
            method=argv[0],
            detail=f"exit {proc.returncode}",
            extra={"stderr": tail},
        )


def _unique(items: list[dict[str, str]]) -> list[dict[str, str]]:
    return [dict(t) for t in dict.fromkeys(tuple(sorted(d.items())) for d in items)]


def _needs_pins(plan: Plan) -> bool:
    return bool({"forensics", "kill", "egress", "quarantine"} & set(plan.actions))


def _about(rec: dict[str, Any], pids: set[int]) -> bool:
    proc = rec.get("process") or {}
    return proc.get("pid") in pids


def _freeze_state(frozen: Frozen) -> dict[str, Any]:
    cg = frozen.cgroup
    return {
        "method": frozen.method,
        "cgroup": {"version": cg.version, "path": cg.path} if cg else None,
        "held": [i.to_record() | {"exe_dev": i.exe_dev} for i in frozen.idents],
    }


def state_path(state_dir: str, incident: str) -> str:
    return os.path.join(state_dir, "response", f"{incident}.json")


def save_state(state_dir: str, state: dict[str, Any]) -> None:
    """What a containment did, so that `sentinel release` can undo it (0600)."""
    path = state_path(state_dir, state["incident"])
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=1)
