"""Atomic writes: all or nothing, and the permissions a plain open() would give (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from common.io import atomic_write_json, atomic_write_text, atomic_writer


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_respect_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_json(tmp_path / "sub" / "b.json", {"a": 1})
    with atomic_writer(tmp_path / "c.bin", "wb") as f:
        f.write(b"\0")
    for name in ("a.txt", "sub/b.json", "c.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
