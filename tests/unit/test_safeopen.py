"""Opening user-controlled paths: no symlink at any component, with openat2 and without."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sentinel.core import safeopen


@pytest.fixture(params=["openat2", "o_path walk"])
def mode(request, monkeypatch) -> str:
    if request.param == "o_path walk":
        monkeypatch.setattr(safeopen, "_have_openat2", False)
    return request.param


def tree(tmp_path: Path) -> Path:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "real" / "sub" / "f").write_text("data")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "f").write_text("secret")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    (tmp_path / "real" / "flink").symlink_to(tmp_path / "secret" / "f")
    return tmp_path


def test_plain_paths_open_and_links_anywhere_are_refused(tmp_path: Path, mode: str) -> None:
    t = tree(tmp_path)
    fd = safeopen.open_nofollow(t / "real" / "sub" / "f")
    try:
        assert os.read(fd, 10) == b"data"
    finally:
        os.close(fd)
    for path in (t / "link" / "f", t / "real" / "flink", t / "link"):
        with pytest.raises(OSError) as exc:
            os.close(safeopen.open_nofollow(path))
        assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR), (mode, path)


def test_beneath_refuses_climbing_out(tmp_path: Path, mode: str) -> None:
    t = tree(tmp_path)
    base = os.open(t / "real", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(safeopen.open_beneath(base, "sub/f"))
        with pytest.raises(OSError) as exc:
            safeopen.open_beneath(base, "../secret/f")
        assert exc.value.errno == errno.EXDEV
    finally:
        os.close(base)


def test_stat_and_listing_and_read(tmp_path: Path, mode: str) -> None:
    t = tree(tmp_path)
    assert safeopen.stat_nofollow(t / "real" / "flink").st_mode & 0o170000 == 0o120000
    dirs, files, links = safeopen.listing(str(t / "real"), 10)
    assert dirs == [f"{t}/real/sub"] and files == [] and links == [f"{t}/real/flink"]
    assert safeopen.listing(str(t / "link"), 10) == ([], [], [])
    st, head, sha = safeopen.read_nofollow(t / "real" / "sub" / "f", 2, 1 << 20)
    assert head == b"da" and st.st_size == 4 and sha is not None
