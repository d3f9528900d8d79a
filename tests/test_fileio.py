"""Atomic writes and overwrite protection."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from s3l.errors import S3LError, where
from s3l.fileio import (
    atomic_open,
    atomic_write_lines,
    atomic_write_text,
    check_overwrite,
    current_umask,
    require_dir,
    require_file,
)


def test_atomic_write_creates_parents_and_content(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b" / "x.txt"
    atomic_write_text(p, "hello")
    assert p.read_text() == "hello"
    atomic_write_lines(p, ["one", "two"])
    assert p.read_text() == "one\ntwo\n"
    with atomic_open(tmp_path / "bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "bin").read_bytes() == b"\x00\x01"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a", "bin"]


def test_exception_leaves_no_partial_file(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write("partial")
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file

    atomic_write_text(p, "old")

    def lines():
        yield "new 1"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_lines(p, lines())
    assert p.read_text() == "old"  # the previous version is untouched
    assert [q.name for q in tmp_path.iterdir()] == ["x.txt"]


def test_check_overwrite(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    check_overwrite([a, b], force=False)  # nothing exists yet
    a.write_text("")
    with pytest.raises(S3LError, match=rf"^{a} already exists; pass --force to overwrite$"):
        check_overwrite([a, b], force=False)
    b.write_text("")
    with pytest.raises(S3LError, match=rf"^{a} \(and 1 more\) already exists"):
        check_overwrite([c, a, b], force=False)
    check_overwrite([a, b], force=True)


def test_require(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    assert require_file(f) == f and require_dir(tmp_path) == tmp_path
    with pytest.raises(S3LError, match=rf"^{tmp_path / 'g'}: manifest not found$"):
        require_file(tmp_path / "g", "manifest")
    with pytest.raises(S3LError, match=rf"^{f}: directory not found$"):
        require_dir(f)
    with pytest.raises(S3LError, match="file not found"):
        require_file(tmp_path)
    assert where("a.tsv", 3) == "a.tsv:3" and where("a.tsv") == "a.tsv"


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_umask(tmp_path: Path, umask: int, expected: int) -> None:
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_text(tmp_path / "text", "x")
        atomic_write_lines(tmp_path / "lines", ["x"])
        with atomic_open(tmp_path / "bin", "wb") as f:
            f.write(b"x")
        with open(tmp_path / "plain", "w") as f:  # what every atomic writer must match
            f.write("x")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"text": expected, "lines": expected, "bin": expected, "plain": expected}


def test_umask_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where /proc is missing the umask is read by setting and restoring it, and stays what it was."""
    from s3l import fileio

    def no_proc(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/self/status")

    monkeypatch.setattr(fileio, "open", no_proc, raising=False)
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert current_umask() == 0o027
    finally:
        assert os.umask(old) == 0o027
