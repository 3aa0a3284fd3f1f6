"""Full and read-only disks, and paths that are not what a command needs: one ``error:`` line naming the path,
a non-zero exit, no traceback, no temporary file left, and (where the command has a long pass) the check
made before that pass starts.

The faults are simulated (``read_only`` / ``full_disk`` below raise the ``OSError`` the kernel would, for
writes under one folder), so they run everywhere; ``test_real_tmpfs_*`` repeat two of them on a real small
or read-only tmpfs where mounting is permitted (root on Linux) and are skipped elsewhere.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from piumr import evaluate as evaluate_module
from piumr.data import prepare as prepare_module
from test_faults import checkpoints, invoke, write_clip

__all__ = ["checkpoints"]  # a fixture shared with test_faults

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _under(path: Any, root: Path) -> bool:
    try:
        return Path(os.fspath(path)).absolute().is_relative_to(root.absolute())
    except TypeError:  # a file descriptor
        return False


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> None:
    """Every write under ``root`` (create, open for writing, make or rename a folder or file) raises
    ``OSError(code)`` as the kernel would on a read-only (EROFS) or full (ENOSPC) file system."""
    text = os.strerror(code)
    real_open, real_os_open = builtins.open, os.open
    real = {name: getattr(os, name) for name in ("mkdir", "replace", "rename")}

    def fail(path: Any) -> None:
        raise OSError(code, text, os.fspath(path))

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+") and _under(file, root):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & _WRITE_FLAGS and _under(path, root):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded(name: str) -> Any:
        def call(src: Any, *args: Any, **kwargs: Any) -> Any:
            if _under(src, root) or (args and _under(args[0], root)):
                fail(src)
            return real[name](src, *args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    for name in real:
        monkeypatch.setattr(os, name, guarded(name))


@pytest.fixture()
def read_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A folder (with one file, ``old.txt``) on a simulated read-only file system."""
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "old.txt").write_text("kept")
    _refuse_writes(monkeypatch, ro, errno.EROFS)
    return ro


@pytest.fixture()
def ckpt(checkpoints: tuple[Path, Path]) -> Path:
    """An untrained tiny checkpoint."""
    return checkpoints[0]


def one_line(res: Result, *names: object) -> str:
    """The single ``error:`` line of a failed command, which names each of ``names``."""
    assert res.exit_code != 0, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    assert all(str(n) in errors[0] for n in names), res.output
    return errors[0]


@pytest.fixture()
def no_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scoring pass must not start (the output check comes first)."""
    # imported before evaluate is patched: a first import during the patch would bind the patched function into
    # predict's namespace, and the undo would then restore it there for the rest of the session
    from piumr import predict as predict_module

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the prediction pass started before the output was checked")
    monkeypatch.setattr(evaluate_module, "collect_scores", refuse)
    monkeypatch.setattr(predict_module, "collect_scores", refuse)


# ------------------------------------------------------------------------------ evaluate


def test_evaluate_out_on_a_read_only_disk(ckpt: Path, read_only: Path, no_scoring: None) -> None:
    line = one_line(invoke("evaluate", "--checkpoint", ckpt, "--out", read_only / "ev"), read_only, "--out")
    assert "Read-only file system" in line


def test_evaluate_of_a_checkpoint_on_read_only_media_says_to_give_out(ckpt: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    media = tmp_path / "media"
    media.mkdir()
    on_media = Path(shutil.copy(ckpt, media / "best.safetensors"))
    _refuse_writes(monkeypatch, media, errno.EROFS)
    monkeypatch.setattr(evaluate_module, "collect_scores", lambda *a, **k: pytest.fail("scored before the check"))
    # eval-val beside the checkpoint is the default: on read-only media that fails in one line asking for --out
    one_line(invoke("evaluate", "--checkpoint", on_media), media / "eval-val", "--out", "Read-only file system")


def test_evaluate_out_that_is_a_file(ckpt: Path, tmp_path: Path, no_scoring: None) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line(invoke("evaluate", "--checkpoint", ckpt, "--out", afile), afile, "Not a folder")
    one_line(invoke("evaluate", "--checkpoint", ckpt, "--out", afile / "sub"), afile, "Not a folder")
    assert afile.read_text() == "x"


# ------------------------------------------------------------------------------ predict


@pytest.fixture()
def test_root(tmp_path: Path) -> Path:
    root = tmp_path / "ma52"
    write_clip(root / "test" / "t1.mp4")
    (root / "test_list_videos.txt").write_text("test/t1.mp4\n")
    return root


def test_predict_submission_on_a_read_only_disk_fails_before_predicting(ckpt: Path, test_root: Path,
                                                                         read_only: Path, no_scoring: None) -> None:
    zip_path = read_only / "sub.zip"
    one_line(invoke("predict", "--checkpoint", ckpt, "--submission", zip_path, "--data", test_root),
             zip_path, "Read-only file system")
    assert sorted(p.name for p in read_only.iterdir()) == ["old.txt"]


def test_predict_submission_that_is_a_folder_fails_before_predicting(ckpt: Path, test_root: Path, tmp_path: Path,
                                                                      no_scoring: None) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    one_line(invoke("predict", "--checkpoint", ckpt, "--submission", folder, "--data", test_root),
             folder, "Is a folder")


def test_predict_clips_with_a_submission_are_not_dropped_silently(ckpt: Path, test_root: Path,
                                                                   tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "mine.mp4")
    res = invoke("predict", clip, "--checkpoint", ckpt, "--submission", tmp_path / "s.zip", "--data", test_root)
    assert res.exit_code == 2  # was: exit 0, the clip never answered
    one_line(res, "--submission", clip)
    assert not (tmp_path / "s.zip").exists()


# ------------------------------------------------------------------------------ prepare


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    for i in range(3):
        write_clip(root / "train" / f"0001_00_000{i}.mp4")
    (root / "train_list_videos.txt").write_text("".join(f"0001_00_000{i}.mp4 0\n" for i in range(3)))
    return root


PREPARE = ["prepare", "--workers", "0", "--splits", "train", "--short-side", "32"]


def test_prepare_out_on_a_read_only_disk(raw: Path, read_only: Path) -> None:
    one_line(invoke(*PREPARE, "--data", raw, "--out", read_only / "cache"), read_only / "cache",
             "Read-only file system")


def test_prepare_out_that_is_a_file(raw: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line(invoke(*PREPARE, "--data", raw, "--out", afile), afile)
    assert afile.read_text() == "x"


def test_prepare_into_its_own_data_folder_is_refused(raw: Path) -> None:
    before = sorted(p.name for p in raw.rglob("*"))
    one_line(invoke(*PREPARE, "--data", raw, "--out", raw), "--out", raw, "data folder")  # was: SameFileError
    assert sorted(p.name for p in raw.rglob("*")) == before


def test_prepare_on_a_full_disk_leaves_no_temporary(raw: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cache"
    real_write = Path.write_bytes

    def full(self: Path, data: Any) -> int:
        if ".tmp" in self.name:
            real_write(self, bytes(data)[: len(data) // 2])  # half of it fits, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, data)

    monkeypatch.setattr(prepare_module.Path, "write_bytes", full)
    line = one_line(invoke(*PREPARE, "--data", raw, "--out", out), out, "No space left on device")
    assert "disk is full" in line
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # was: *.jpgs.tmpPID files left for good


# ------------------------------------------------------------------------------ synth, reproduce, PIUMR_CACHE


def test_synth_out_on_a_read_only_disk(read_only: Path) -> None:
    one_line(invoke("synth", "--preset", "tiny", "--workers", "1", "--out", read_only / "data"),
             read_only / "data", "Read-only file system")


def test_synth_out_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line(invoke("synth", "--preset", "tiny", "--workers", "1", "--out", afile), afile)
    assert afile.read_text() == "x"


@pytest.mark.parametrize("where", ["read-only", "file"])
def test_reproduce_out_unwritable_fails_before_training(where: str, read_only: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from piumr import reproduce as reproduce_module
    monkeypatch.setattr(reproduce_module, "run_many", lambda *a, **k: pytest.fail("ran before the check"))
    out = read_only / "rep"
    if where == "file":
        out = tmp_path / "afile"
        out.write_text("x")
    one_line(invoke("reproduce", "table2", "--data", "synth", "--preset", "tiny", "--max-steps-per-epoch", "1",
                    "--epochs", "1", "--quiet", "--out", out), out)


@pytest.mark.parametrize("where", ["read-only", "file"])
def test_piumr_cache_unwritable_or_a_file_is_one_line_naming_it(where: str, ckpt: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    if where == "file":
        cache.write_text("x")
    else:
        cache.mkdir()
        _refuse_writes(monkeypatch, cache, errno.EROFS)
    monkeypatch.setenv("PIUMR_CACHE", str(cache))
    one_line(invoke("evaluate", "--checkpoint", ckpt, "--data", "synth", "--out", tmp_path / "ev"),
             f"PIUMR_CACHE={cache}")


# ------------------------------------------------------------------------------ a real tmpfs, where permitted


@pytest.fixture()
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at a fresh folder (skipped where mounting is not permitted)."""
    point = tmp_path / "mnt"
    point.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def test_real_tmpfs_prepare_on_a_full_disk(raw: Path, tmpfs: Path) -> None:
    filler = tmpfs / "filler"
    with open(filler, "wb") as fh:  # fill it but for a few KiB: the lists fit, a clip does not
        try:
            fh.write(b"\0" * (1024 * 1024 - 12 * 1024))
        except OSError:
            pass
    write_clip(raw / "train" / "0001_00_0000.mp4", frames=20, width=320, height=240)
    line = one_line(invoke(*PREPARE, "--short-side", "240", "--data", raw, "--out", tmpfs / "cache"),
                    "No space left on device")
    assert str(tmpfs) in line
    assert not [p for p in tmpfs.rglob("*") if ".tmp" in p.name]


def test_real_tmpfs_evaluate_on_read_only_media(ckpt: Path, tmpfs: Path) -> None:
    shutil.copy(ckpt, tmpfs / "best.safetensors")
    if subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode:
        pytest.skip("remounting read-only is not permitted here")
    one_line(invoke("evaluate", "--checkpoint", tmpfs / "best.safetensors"), tmpfs / "eval-val", "--out")
