"""Device choice and the CPU thread rule (``piumr.runtime``), and their command-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from piumr import runtime
from piumr.errors import DeviceError
from piumr.runtime import configure_threads, physical_cores, pick_device, thread_budget
from piumr_cli.main import app

runner = CliRunner()


def test_pick_device_auto_and_cpu() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(None).type == want and pick_device("auto").type == want
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["banana", "cuda:x", "meta"])
def test_pick_device_rejects_non_devices(bad: str) -> None:
    with pytest.raises(DeviceError, match=bad):
        pick_device(bad)


def test_pick_device_rejects_absent_gpu() -> None:
    if torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda:99"):
            pick_device(f"cuda:{99}")
    else:
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            pick_device("cuda")


@pytest.mark.parametrize("args", [["train", "--preset", "tiny", "--quiet"], ["info", "--preset", "tiny"],
                                  ["bench", "train", "--preset", "tiny"], ["reproduce", "table2", "--data", "synth"]])
def test_cli_bad_device_is_one_line(args: list[str]) -> None:
    if args[0] == "info":
        res = runner.invoke(app, [*args, "--threads", "0"])
        assert res.exit_code == 2 and "--threads" in res.output and "Traceback" not in res.output
        return
    res = runner.invoke(app, [*args, "--device", "banana"])
    assert res.exit_code == 2, res.output
    assert "banana" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def test_thread_budget_rule() -> None:
    assert thread_budget(None, 0, 4) == 4
    assert thread_budget(None, 1, 2) == 1
    assert thread_budget(None, 3, 2) == 1  # workers alone fill the cores: one main thread still runs
    assert thread_budget(8, 0, 4) == 4  # an explicit request is capped, never raised above the rule
    assert thread_budget(2, 0, 4) == 2
    assert thread_budget(None, 0, 4, omp="2") == 2
    assert thread_budget(None, 1, 4, omp="16") == 3
    assert thread_budget(3, 0, 8, omp="1") == 3  # --threads wins over OMP_NUM_THREADS
    for cores in range(1, 17):
        for workers in range(cores):
            for threads in (None, 1, cores, 4 * cores):
                assert workers + thread_budget(threads, workers, cores) <= cores


@pytest.mark.parametrize("threads, omp, match", [(0, None, "--threads"), (None, "x", "OMP_NUM_THREADS"),
                                                 (None, "0", "OMP_NUM_THREADS")])
def test_thread_budget_bad_values(threads: int | None, omp: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        thread_budget(threads, 0, 4, omp=omp)


def test_physical_cores_counts_cores_not_hyperthreads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 sockets x 2 cores x 2 hyperthreads = 8 logical CPUs, 4 physical cores
    blocks = [f"processor\t: {i}\nphysical id\t: {i // 4}\ncore id\t\t: {(i // 2) % 2}\n" for i in range(8)]
    info = tmp_path / "cpuinfo"
    info.write_text("\n".join(blocks))
    monkeypatch.setattr(runtime, "_allowed_cpus", lambda: 8)
    assert physical_cores(info) == 4
    monkeypatch.setattr(runtime, "_allowed_cpus", lambda: 3)  # affinity mask allows only 3 CPUs
    assert physical_cores(info) == 3
    assert physical_cores(tmp_path / "absent") == 3


def test_configure_threads_sets_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert configure_threads(None, 0) == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        n = configure_threads(None, 0)
        assert n == physical_cores() and torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


def test_cpu_identity_names_the_model_and_torchs_kernel_set(tmp_path: Path) -> None:
    from piumr.runtime import cpu_identity

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t: avx2\n")
    ident = cpu_identity(info)
    assert ident["model"] == "AMD EPYC (family 25, model 1)"
    assert ident["torch_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert cpu_identity(tmp_path / "absent")["model"]  # unreadable: still a name, never an empty string
