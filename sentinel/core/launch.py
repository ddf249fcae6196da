"""What a process really runs when its executable is only a carrier: the program the
dynamic loader maps (`ld.so ./payload`) or the script an interpreter reads
(`python3 /tmp/x.py`). Parsing is pure; `resolve` makes the few reads that tell whether
the payload is still on disk."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

LOADER = re.compile(r"ld-linux(?:-[\w-]+)?\.so\.\d+|ld-musl-\w+\.so\.1|ld(?:64)?\.so(?:\.\d+)?")
# loader options that take a value (glibc rtld: elf/rtld.c)
LOADER_VALUE = frozenset(
    {
        "--library-path",
        "--preload",
        "--argv0",
        "--audit",
        "--inhibit-rpath",
        "--glibc-hwcaps-prepend",
        "--glibc-hwcaps-mask",
    }
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one interpreter family takes its options."""

    exe: re.Pattern[str]
    inline: frozenset[str]  # code on the command line: no script
    value: frozenset[str]  # options whose value is the next argument (when not attached)
    script_opt: frozenset[str] = frozenset()  # options whose value is the script (php -f)


DIALECTS = (
    Dialect(
        re.compile(r"(?:python|pypy)[\d.]*(?:-dbg)?"),
        frozenset({"-c", "-m"}),
        frozenset({"-W", "-X", "--check-hash-based-pycs"}),
    ),
    Dialect(re.compile(r"perl[\d.]*"), frozenset({"-e", "-E"}), frozenset({"-I", "-M", "-m"})),
    Dialect(
        re.compile(r"ruby[\d.]*"),
        frozenset({"-e"}),
        frozenset({"-I", "-r", "-C", "-E", "--encoding"}),
    ),
    Dialect(
        re.compile(r"node(?:js)?|bun|deno"),
        frozenset({"-e", "--eval", "-p", "--print"}),
        frozenset({"-r", "--require", "--import", "--loader", "-C", "--conditions"}),
    ),
    Dialect(
        re.compile(r"php[\d.]*(?:-cli)?"),
        frozenset({"-r", "-S", "-a"}),
        frozenset({"-c", "-d", "-z", "-t"}),
        frozenset({"-f"}),
    ),
    Dialect(
        re.compile(r"(?:ba|da|z|k|mk|a|rba)?sh"),
        frozenset({"-c", "-s"}),
        frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"}),
    ),
)
FD_PATH = re.compile(r"/(?:proc/(?:self|\d+|thread-self)/fd|dev/fd)/(\d+)")


@dataclass(frozen=True, slots=True)
class Launch:
    """The payload of a carrier: kind 'loader' or 'script', the path as given, and (for
    the loader) the argv0 it was told to give the payload."""

    kind: str
    path: str
    argv0: str = ""


def _base(path: str) -> str:
    return path.rstrip("/").rpartition("/")[2]


def _loader(argv: list[str]) -> Launch | None:
    argv0 = ""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("--"):
            break
        name, eq, value = arg.partition("=")
        if name in LOADER_VALUE and not eq:
            value = argv[i + 1] if i + 1 < len(argv) else ""
            i += 1
        if name == "--argv0":
            argv0 = value
        i += 1
    return Launch("loader", argv[i], argv0) if i < len(argv) else None


def _bundles_inline(dialect: Dialect, arg: str) -> bool:
    """Bundled short flags (`python3 -uc CODE`, `perl -ne CODE`) holding a code option;
    not an attached value (`-Wignore`, `-Xdev`)."""
    if arg[:1] != "-" or arg[1:2] in ("-", "") or len(arg) < 3 or f"-{arg[1]}" in dialect.value:
        return False
    return any(f"-{c}" in dialect.inline for c in arg[1:])


def _script(dialect: Dialect, argv: list[str]) -> Launch | None:
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "-" or not arg.startswith(("-", "+")):
            break
        name, eq, value = arg.partition("=")
        if name in dialect.inline:
            return None
        if name in dialect.script_opt:
            return Launch("script", value or (argv[i + 1] if i + 1 < len(argv) else ""))
        if name in dialect.value and not eq:
            i += 1  # the value is the next argument
        elif _bundles_inline(dialect, arg):
            return None
        i += 1
    if i >= len(argv) or argv[i] == "-":
        return None  # the script comes from stdin
    return Launch("script", argv[i])


def parse(exe: str, argv: list[str]) -> Launch | None:
    """The payload of a loader or interpreter process, from its executable and argv."""
    name = _base(exe).lower()
    if LOADER.fullmatch(name):
        return _loader(argv)
    for dialect in DIALECTS:
        if dialect.exe.fullmatch(name):
            return _script(dialect, argv)
    return None


def absolute(path: str, cwd: str) -> str:
    """The payload path made absolute against the process's working directory and
    normalised (`/usr/../tmp/x` and `//tmp/x` are /tmp/x); symlinks are not followed."""
    if not path or not (path.startswith("/") or cwd):
        return path
    joined = os.path.normpath(os.path.join(cwd, path))
    return "/" + joined.lstrip("/") if joined.startswith("/") else joined


def resolve(pid: int, path: str, procfs: str = "/proc") -> tuple[str, bool]:
    """(where the payload is, whether it is gone) for a payload of process `pid`: a path
    through /proc/self/fd or /dev/fd is the fd's target (a memfd, a pipe); a path is
    looked up (lstat, nothing followed or opened) inside the process's root."""
    fd = FD_PATH.fullmatch(path)
    if fd:
        try:
            target = os.readlink(f"{procfs}/{pid}/fd/{fd.group(1)}")
        except OSError:
            return path, False
        gone = target.endswith(" (deleted)")
        return target.removesuffix(" (deleted)"), gone or target.startswith("/memfd:")
    if not path.startswith("/"):
        return path, False
    try:
        os.lstat(f"{procfs}/{pid}/root{path}")
    except FileNotFoundError:
        return path, True
    except OSError:
        pass
    return path, False
