"""Atomic writes and overwrite protection."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3l.errors import S3LError, where
from s3l.fileio import (
    atomic_open,
    atomic_write_lines,
    atomic_write_text,
    check_overwrite,
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
