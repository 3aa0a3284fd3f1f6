"""``piumr.run_folder``: one process per run folder, a new run only into an empty one, ``--fresh`` moves only a
run aside, the log is trimmed to a checkpoint's step, and a resume changes only what may change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from piumr.config import get_preset, with_overrides
from piumr.errors import RunFolderError
from piumr.run_folder import AmendmentError, RunLock, amendments, claim, read_config, trim_log, write_config


def test_a_second_lock_on_a_run_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run = tmp_path / "a" / "run"
    with RunLock(run):
        with pytest.raises(RunFolderError, match=r"another training \(pid \d+ on .+\) is running"):
            RunLock(run).acquire()
    assert not (tmp_path / "a").exists()  # nothing written: the folders the lock made are gone again
    with RunLock(run):  # released: the next one gets it
        pass


def test_claim_refuses_a_dataset_and_moves_only_a_run_aside(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_list_videos.txt").write_text("a.mp4 0\n")
    for fresh in (False, True):
        with pytest.raises(RunFolderError, match="holds a dataset"):
            claim(data, fresh=fresh)
    assert (data / "train_list_videos.txt").is_file()
    run = tmp_path / "run"
    write_config(run, get_preset("tiny"), [])
    with pytest.raises(RunFolderError, match="already holds a run"):
        claim(run)
    lock, moved = claim(run, fresh=True)
    lock.release()
    assert moved is not None and moved.name.startswith("run.old-") and read_config(moved)[0] == get_preset("tiny")


def test_trim_log_keeps_the_rows_up_to_the_checkpoint(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    rows = [{"type": "start"}, {"step": 10}, {"step": 20}, {"step": 30}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4')  # a line cut by a kill
    assert trim_log(log, 20) == 2
    assert [json.loads(line) for line in log.read_text().splitlines()] == rows[:3]
    log.write_text('{"step": null}\n')
    with pytest.raises(RunFolderError, match=r"log.jsonl: line 1: step is None, not a count"):
        trim_log(log, 5)


def test_a_resume_may_lengthen_the_run_but_not_change_the_model(tmp_path: Path) -> None:
    old = get_preset("tiny")
    longer = with_overrides(old, {"optim.epochs": old.optim.epochs + 2})
    (change,) = amendments(old, longer, epochs_done=1)
    assert (change.key, change.new) == ("optim.epochs", old.optim.epochs + 2)
    with pytest.raises(AmendmentError, match="the run has already done 3 epoch"):
        amendments(old, with_overrides(old, {"optim.epochs": 2}), epochs_done=3)
    with pytest.raises(AmendmentError, match=r"^model\.num_classes cannot change when a run is resumed"):
        amendments(old, with_overrides(old, {"model.num_classes": 9}), epochs_done=0)
