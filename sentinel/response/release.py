"""Undo recorded containments: thaw what was frozen, remove the incident's egress rules."""

from __future__ import annotations

import glob
import json
import os
import signal
from typing import Any

from sentinel.core.config import Config
from sentinel.response.egress import Nft, NftError
from sentinel.response.freeze import find_cgroup
from sentinel.response.targets import Held, Identity, resolve_uid

Result = tuple[str, bool, list[int], str]  # action, ok, pids, detail


def _matches(state: dict[str, Any], selector: dict[str, Any]) -> bool:
    if not selector:
        return False
    if "incident" in selector:
        return state["incident"] == selector["incident"]
    if "pid" in selector:
        held = [h["pid"] for h in (state.get("freeze") or {}).get("held", [])]
        return selector["pid"] in state.get("roots", []) or selector["pid"] in held
    scope = state.get("scope") or {}
    ((kind, value),) = selector.items()
    if kind == "user" and scope.get("kind") == "user":
        return resolve_uid(scope["value"]) == resolve_uid(value)
    return scope.get("kind") == kind and scope.get("value") == value


def _thaw(frozen: dict[str, Any]) -> Result:
    cg = frozen.get("cgroup")
    if cg:
        group = find_cgroup(cg["path"], cg["version"])
        if group is None:
            return ("thaw", True, [], f"cgroup {cg['path']} is gone")
        try:
            group.freeze(False)
        except OSError as exc:
            return ("thaw", False, [], f"{group}: {exc.strerror}")
        return ("thaw", True, sorted(group.procs()), f"thawed {group}")
    thawed, gone, errors = [], 0, []
    for h in frozen.get("held", []):
        ident = Identity(h["pid"], h["start_ticks"], h["exe_dev"], h["exe_ino"])
        held = Held.open(ident)
        if held is None:
            gone += 1
            continue
        why = held.send(signal.SIGCONT)
        held.close()
        if why and why != "exited":
            errors.append(f"{ident.pid}: {why}")
        elif not why:
            thawed.append(ident.pid)
    detail = f"SIGCONT; {gone} gone or changed" if gone else "SIGCONT"
    return ("thaw", not errors, thawed, "; ".join(errors) or detail)


def release(cfg: Config, selector: dict[str, Any]) -> list[Result]:
    """Undo every recorded containment the selector names; what was undone, per step.
    A destination another recorded containment also blocks stays blocked, and the table
    goes only with the last containment that cut egress."""
    results: list[Result] = []
    nft = Nft([cfg.response.nft])
    root = os.path.join(cfg.agent.state_dir, "response")
    states = []
    for path in sorted(glob.glob(os.path.join(root, "*.json"))):
        with open(path) as f:
            states.append((path, json.load(f)))
    chosen = [(path, state) for path, state in states if _matches(state, selector)]
    kept = [state["egress"] for _, state in states if not _matches(state, selector)]
    kept = [cut for cut in kept if cut]
    blocked = {addr for cut in kept for addr in cut.get("destinations", [])}
    cutting = sum(1 for _, state in chosen if state.get("egress"))
    for path, state in chosen:
        done: list[Result] = []
        if state.get("freeze"):
            done.append(_thaw(state["freeze"]))
        cut = state.get("egress")
        if cut:
            cutting -= 1
            dests = [a for a in cut.get("destinations", []) if a not in blocked]
            try:
                undone = nft.release(cut["comment"], dests)
                if dests != cut.get("destinations", []):
                    undone.append("destinations kept: another containment blocks them")
                left = [
                    o
                    for o in nft.table()
                    if str(o.get("rule", {}).get("comment", "")).startswith("sentinel:")
                ]
                if not (left or kept or cutting):
                    undone += nft.release(None)
                done.append(("egress", True, [], "removed " + (", ".join(undone) or "nothing")))
            except NftError as exc:
                done.append(("egress", False, [], str(exc)))
        if all(ok for _, ok, _, _ in done):
            os.unlink(path)
        results += done
    return results
