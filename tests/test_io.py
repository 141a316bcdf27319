"""fwi.io atomic writes: umask, fsync, stale temporaries of killed runs, a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from fwi import io
from fwi.errors import FwiError
from fwi.io import HOST, atomic_path, remove_stale_temporaries, save_text


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_created_files_follow_the_umask(tmp_path, umask_027):
    save_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    os.umask(0o002)
    save_text(tmp_path / "b.txt", "x")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o664


def test_file_then_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(io.os, "fsync", spy)
    save_text(tmp_path / "c.txt", "hello")
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / ".c.txt.")) and synced[0].endswith(".tmp")  # the data, pre-rename
    assert synced[1] == str(tmp_path)  # then the directory entry
    assert (tmp_path / "c.txt").read_text() == "hello" and os.listdir(tmp_path) == ["c.txt"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".last.pt.{HOST}-{dead_pid()}.0a1b.tmp"
        running = tmp_path / f".last.pt.{HOST}-{live.pid}.0a1c.tmp"
        other_host = tmp_path / f".last.pt.0000beef-{dead_pid()}.0a1d.tmp"
        unrelated = tmp_path / "notes.tmp"
        for p in (stale, running, other_host, unrelated):
            p.write_bytes(b"x" * 100)
        assert remove_stale_temporaries(tmp_path) == [stale]
        assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in (running, other_host, unrelated))
    finally:
        live.kill()
        live.wait()


def test_a_new_write_cleans_its_folder_once(tmp_path):
    stale = tmp_path / f".metrics.csv.{HOST}-{dead_pid()}.ff.tmp"
    stale.write_text("half")
    save_text(tmp_path / "metrics.csv", "epoch\n0\n")
    assert not stale.exists()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch, where):
    target = tmp_path / "best.pt"
    target.write_text("previous")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "fsync":
        monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(FwiError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            if where == "write":
                full()
    assert str(info.value) == (f"no space left on the device of {target} while writing it (nothing was written; "
                               "free some space and rerun)")
    assert target.read_text() == "previous" and os.listdir(tmp_path) == ["best.pt"]


def test_polars_disk_full_error_is_recognised():
    assert io.is_disk_full(OSError("No space left on device (os error 28)"))
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert io.is_disk_full(wrapped)
    assert not io.is_disk_full(OSError(errno.EACCES, "Permission denied"))
