"""Checkpoint metadata is bounded by the file: every model size read from a checkpoint's metadata is checked
against the tensors stored in it (the safetensors header) before anything is allocated, and malformed
metadata is one line naming the file, from the library and from ``predict`` / ``evaluate``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from piumr.checkpoint import load_model, read_checkpoint
from piumr.errors import CheckpointError
from test_faults import checkpoints, invoke, write_clip

__all__ = ["checkpoints"]  # a fixture shared with test_faults


@pytest.fixture()
def good(checkpoints: tuple[Path, Path]) -> Path:
    """An untrained tiny checkpoint."""
    return checkpoints[0]


def edited(src: Path, dest: Path, *, config: dict[str, object] | None = None, meta: str | None = None,
           raw_config: str | None = None) -> Path:
    """A copy of checkpoint ``src`` whose metadata is edited: ``config`` keys (dotted, into the model config)
    set, ``meta`` / ``raw_config`` replacing ``piumr_meta`` / ``piumr_config`` as given."""
    with safe_open(str(src), framework="pt") as f:
        md = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(md["piumr_config"])
    for key, value in (config or {}).items():
        node = cfg["model"]
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    md["piumr_config"] = raw_config if raw_config is not None else json.dumps(cfg)
    if meta is not None:
        md["piumr_meta"] = meta
    save_file(tensors, str(dest), metadata=md)
    return dest


def one_error_line(text: str, path: Path) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error:") and str(path) in lines[0], text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("key, value", [("num_classes", 5_000_000), ("num_classes", 10_000_000_000),
                                        ("tfam.attn_dim", 1_000_000_000), ("tfam.num_dct", 40),
                                        ("tfam.attn_kernel", 999)])
def test_a_size_in_the_metadata_that_no_stored_tensor_has_is_refused_at_once(good: Path, tmp_path: Path,
                                                                            key: str, value: int) -> None:
    bad = edited(good, tmp_path / "edited.safetensors", config={key: value})
    read_checkpoint(good)  # imports and caches warmed, so the time below is the check alone
    t = time.perf_counter()
    with pytest.raises(CheckpointError) as e:
        load_model(bad)
    assert time.perf_counter() - t < 1.0  # was: 5.8 GB and 18 s for 5e6 classes; an allocator traceback for 1e10
    assert str(bad) in str(e.value) and f"model.{key} = {value}" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_commands_refuse_a_checkpoint_with_edited_sizes_in_one_line(good: Path, tmp_path: Path,
                                                                     command: str) -> None:
    bad = edited(good, tmp_path / "edited.safetensors", config={"num_classes": 10_000_000_000})
    args = [write_clip(tmp_path / "a.mp4")] if command == "predict" else ["--out", tmp_path / "eval"]
    t = time.perf_counter()
    res = invoke(command, "--checkpoint", bad, *args)
    assert res.exit_code == 2 and time.perf_counter() - t < 30  # (imports included; was a traceback)
    assert "no weight stored in the file has that size" in one_error_line(res.output, bad)


def test_weights_of_another_shape_than_the_config_says_are_named(good: Path, tmp_path: Path) -> None:
    # 5 is a size the file has (elsewhere), but not the size of the frequency branch's attention kernel (3)
    bad = edited(good, tmp_path / "edited.safetensors", config={"tfam.attn_kernel": 5})
    with pytest.raises(CheckpointError, match=r"weights do not fit .* in the file, .* by its config"):
        read_checkpoint(bad)


@pytest.mark.parametrize("meta, raw_config, config, expected", [
    ("[1,2]", None, None, "a JSON object expected, found list"),
    ("{not json", None, None, "not JSON"),
    ('{"epoch": "abc", "step": 0}', None, None, "epoch = 'abc', a count expected"),
    ('{"epoch": 0, "step": 0, "optim": [1]}', None, None, "optim is a list"),
    ('{"epoch": 0, "step": 0, "optim": {"param_groups": 5}}', None, None, "invalid optimiser state"),
    (None, "this is not json", None, "invalid piumr_config metadata"),
    (None, None, {"num_classes": "many"}, "invalid piumr_config metadata"),
    (None, None, {"tfam.dct_kernel": 1_000_000}, "invalid piumr_config metadata"),
    (None, None, {"tfam.attn_heads": 7}, "does not describe a model that can be built"),
])
def test_malformed_metadata_is_one_line_naming_the_file(good: Path, tmp_path: Path, meta: str | None,
                                                         raw_config: str | None, config: dict[str, object] | None,
                                                         expected: str) -> None:
    bad = edited(good, tmp_path / "edited.safetensors", meta=meta, raw_config=raw_config, config=config)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(bad)
    assert str(bad) in str(e.value) and expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_commands_with_malformed_meta_give_one_line(good: Path, tmp_path: Path, command: str) -> None:
    bad = edited(good, tmp_path / "edited.safetensors", meta="[1,2]")  # was an AttributeError traceback
    args = [write_clip(tmp_path / "a.mp4")] if command == "predict" else ["--out", tmp_path / "eval"]
    res = invoke(command, "--checkpoint", bad, *args)
    assert res.exit_code == 2
    one_error_line(res.output, bad)


def test_a_config_that_is_not_json_is_one_line_in_predict(good: Path, tmp_path: Path) -> None:
    bad = edited(good, tmp_path / "edited.safetensors", raw_config='{"model": {"num_classes": -3}}')
    res = invoke("predict", "--checkpoint", bad, write_clip(tmp_path / "a.mp4"))
    assert res.exit_code == 2  # was: pydantic's multi-line report
    one_error_line(res.output, bad)
