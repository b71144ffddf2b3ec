"""maildir.read_file, the store's one way to read a message file (Mailbox.read, read_nowait):
the whole file in four system calls (open, fstat, read, close) for any size, and a file that
grew after its fstat is still read to its end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailsift.store import maildir as md


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 70_000, 3 * 1024 * 1024 + 7])
def test_read_file_gives_every_byte(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "m"
    path.write_bytes(data)
    assert md.read_file(str(path)) == data


def test_a_file_that_grows_after_the_fstat_is_read_to_its_end(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"a" * 100)
    real = os.fstat

    def fstat_then_grow(fd: int) -> os.stat_result:
        st = real(fd)
        with open(path, "ab") as fh:
            fh.write(b"b" * 5000)
        return st

    monkeypatch.setattr(md.os, "fstat", fstat_then_grow)
    assert md.read_file(str(path)) == b"a" * 100 + b"b" * 5000


def test_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        md.read_file(str(tmp_path / "gone"))
