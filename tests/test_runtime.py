"""The CPU thread policy: tiny models on one thread, full-size ones on this process's cores."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saganet import runtime
from saganet.cli import CPU_BF16_HINT, add_model_arguments, device_and_dtype
from saganet.errors import UserInputError
from saganet.model import VARIANTS
from saganet.pipeline import PIPELINES


@pytest.mark.parametrize("name", [*VARIANTS, *PIPELINES])
def test_tiny_models_are_the_narrow_ones(name: str) -> None:
    network = PIPELINES[name].network if name in PIPELINES else name
    narrow = VARIANTS[network].hidden_dim < runtime.TINY_HIDDEN_DIM
    assert runtime.is_tiny_model(name) == narrow


def test_unknown_or_missing_model_is_full_size() -> None:
    assert not runtime.is_tiny_model(None)
    assert not runtime.is_tiny_model("no such variant")


@pytest.mark.parametrize("cores", [1, 2, 16])
@pytest.mark.parametrize("processes", [1, 2, 8])
def test_policy_splits_cores_between_processes(cores: int, processes: int) -> None:
    full = runtime.choose_policy(cores, tiny=False, processes=processes)
    tiny = runtime.choose_policy(cores, tiny=True, processes=processes)
    assert full.intra_op == max(1, cores // processes) == full.cores
    assert tiny.intra_op == 1
    assert full.inter_op == tiny.inter_op == 1
    # Together the processes never ask for more threads than cores (unless one core each).
    assert full.intra_op * processes <= max(cores, processes)


@pytest.mark.parametrize("tiny", [True, False])
def test_explicit_request_wins(tiny: bool) -> None:
    assert runtime.choose_policy(2, tiny=tiny, requested=5).intra_op == 5
    assert runtime.choose_policy(2, tiny=tiny, requested=0).intra_op == (1 if tiny else 2)


def test_cgroup_quota_caps_the_affinity_mask(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert runtime.available_cores(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU still runs one thread
    assert runtime.available_cores(cpu_max) == 1
    cpu_max.write_text(f"{100000 * affinity + 1} 100000\n")  # above the mask: the mask wins
    assert runtime.available_cores(cpu_max) == affinity
    assert runtime.available_cores(tmp_path / "absent") == affinity


def test_configure_applies_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The thread counts it sets are put back after the test by tests/conftest.py.
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    policy = runtime.configure_runtime("debug")
    assert policy.intra_op == torch.get_num_threads() == 1
    policy = runtime.configure_runtime("saganet_small")
    assert policy.intra_op == torch.get_num_threads() == runtime.available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.configure_runtime("debug").intra_op == torch.get_num_threads() == 3
    assert runtime.configure_runtime("debug", threads=2).intra_op == 2


def test_a_tests_thread_count_does_not_reach_the_next_test(tmp_path: Path) -> None:
    """tests/conftest.py puts the policy's thread count back after every test, so that a test
    (or an entry point's main() run in-process) setting another one leaves it to nobody."""
    (tmp_path / "test_pair.py").write_text(
        "import torch\n\n"
        "START = []\n\n"
        "def test_sets_another_count():\n"
        "    START.append(torch.get_num_threads())\n"
        "    torch.set_num_threads(START[0] + 2)\n\n"
        "def test_starts_on_the_same_count():\n"
        "    assert torch.get_num_threads() == START[0]\n")
    repo = Path(__file__).parents[1]
    # The child runs its two tests in order, in one process: no options of this run (-n ...).
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest",
                           "-p", "no:cacheprovider", "-p", "no:xdist", "test_pair.py"],
                          cwd=tmp_path, env={**env, "PYTHONPATH": str(repo)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout


def test_loader_workers_capped_at_the_process_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    cores = runtime.available_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert runtime.loader_workers(0) == 0
    assert runtime.loader_workers(1) == 1
    assert runtime.loader_workers(cores + 7) == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores + 1))  # more ranks than cores
    assert runtime.loader_workers(8) == 1


# A parent whose one loader worker hangs in a sample, as on a stalled network file system; it
# prints the worker's pid. The loader is built the training way or the plain way.
_HUNG_WORKER = """
import os, sys, time
import torch
from torch.utils.data import DataLoader, Dataset
from saganet.runtime import loader_worker_start
from saganet.training.data import build_loader

class Hung(Dataset):
    def __len__(self):
        return 2
    def __getitem__(self, index):
        print(os.getpid(), flush=True)
        time.sleep(600)
        return torch.zeros(1)

if sys.argv[1] == "training":
    loader = build_loader(Hung(), batch_size=1, rank=0, world_size=1, shuffle=False,
                          drop_last=False, seed=0, num_workers=1, pin_memory=False)
else:
    loader = DataLoader(Hung(), num_workers=1, worker_init_fn=loader_worker_start)
next(iter(loader))
"""


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie that nobody reaps has ended too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(platform.system() != "Linux", reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("loader", ["training", "plain"])
def test_a_hung_loader_worker_ends_with_its_killed_parent(loader: str) -> None:
    """torch's workers look for a dead parent only between samples: one stuck in a sample
    outlived a trainer killed with SIGKILL (torchrun's and SLURM's last word)."""
    parent = subprocess.Popen([sys.executable, "-c", _HUNG_WORKER, loader], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    worker = None
    try:
        line = parent.stdout.readline().strip()
        assert line, "the parent ended before its worker loaded a sample"
        worker = int(line)
        assert worker != parent.pid and not _gone(worker)
        parent.kill()
        parent.wait(timeout=30)
        for _ in range(100):
            if _gone(worker):
                break
            time.sleep(0.1)
        assert _gone(worker), "the loader worker outlived its killed parent"
    finally:
        parent.kill()
        parent.stdout.close()
        if worker is not None and not _gone(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_worker_whose_parent_lives_is_left_running() -> None:
    """The signal is set, and setting it does not end a worker whose parent is alive."""
    context = multiprocessing.get_context()
    with context.Pool(1, initializer=runtime.loader_worker_start, initargs=(0,)) as pool:
        assert pool.apply(runtime.end_with_parent) is (platform.system() == "Linux")
        assert pool.apply(os.getpid) != os.getpid()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc settings are glibc's")
def test_large_blocks_are_reused_without_page_faults() -> None:
    assert runtime.keep_freed_memory()
    size = 64 * 2**20 // 4  # above glibc's largest mapping threshold
    faults = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(size).mul(2)  # two large blocks, touched and freed
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    pages = size * 4 // resource.getpagesize()
    # Fresh mappings would fault on every page of both blocks in every round (2 * pages);
    # reused heap memory faults only when the heap has to grow. Most rounds after the first
    # two must be cheap: a round now and then that grows the heap again (another thread of
    # the process allocating meanwhile, under pytest -n 2) is not a fresh mapping each time.
    cheap = [f < pages // 2 for f in faults[2:]]
    assert sum(cheap) > len(cheap) // 2, f"page faults per round: {faults} ({pages} pages)"


@pytest.mark.parametrize(("flags", "fast"), [("fpu avx2 fma", False),
                                             ("fpu avx512f avx512_bf16", True),
                                             ("fpu amx_bf16 amx_tile", True)])
def test_bf16_support_is_read_from_the_cpu_flags(tmp_path: Path, flags: str,
                                                 fast: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert runtime.cpu_has_fast_bf16(cpuinfo) is fast
    assert runtime.cpu_has_fast_bf16(tmp_path / "absent") is False


@pytest.mark.parametrize(("device", "options", "expected"), [
    ("cpu", [], torch.float32),
    ("cpu", ["--cpu_bf16"], torch.bfloat16),
    ("cpu", ["--full_precision"], torch.float32),
])
def test_cpu_bf16_is_opt_in(device: str, options: list[str], expected: torch.dtype) -> None:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args(["--device", device, *options])
    assert device_and_dtype(args) == (torch.device(device), expected)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(("options", "hinted_if_fast"), [
    ([], True), (["--cpu_bf16"], False), (["--full_precision"], False)])
def test_fp32_on_a_bf16_cpu_hints_at_cpu_bf16(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture, fast: bool,
                                               options: list[str], hinted_if_fast: bool) -> None:
    """Only a CPU that multiplies bf16 natively, running a full-size model in fp32 by default,
    suggests --cpu_bf16; one without the instructions warns when it is asked for bf16."""
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast)
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    with caplog.at_level("INFO", logger="saganet.cli"):
        device_and_dtype(parser.parse_args(["--device", "cpu", *options]))
        hinted = CPU_BF16_HINT in [record.getMessage() for record in caplog.records]
        caplog.clear()
        device_and_dtype(parser.parse_args(["--device", "cpu", "--variant", "debug", *options]))
    messages = [record.getMessage() for record in caplog.records]
    assert hinted == (fast and hinted_if_fast)
    assert CPU_BF16_HINT not in messages  # the debug variant's tiny models: no hint
    warned = any("no bf16 matrix instructions" in m for m in messages)
    assert warned == (not fast and "--cpu_bf16" in options)


def test_cpu_bf16_contradicts_full_precision() -> None:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args(["--device", "cpu", "--cpu_bf16", "--full_precision"])
    with pytest.raises(UserInputError, match="contradict"):
        device_and_dtype(args)


def test_threads_benchmark_times_every_setting_in_lockstep(tmp_path: Path) -> None:
    """benchmarks/threads.py reports each requested thread count and the policy's, per
    process count (its own processes, so the run is real but tiny)."""
    counts, processes = [1, 2], [1, 2]
    out = tmp_path / "threads.json"
    subprocess.run([sys.executable, "benchmarks/threads.py", "--workloads", "tiny",
                    "--threads", *map(str, counts), "--processes", *map(str, processes),
                    "--repeats", "1", "--json", str(out)],
                   check=True, capture_output=True, cwd=Path(__file__).parents[1])
    result = json.loads(out.read_text())
    assert [row["processes"] for row in result["rows"]] == processes
    for row in result["rows"]:
        policy = runtime.choose_policy(result["cores"], tiny=True,
                                       processes=row["processes"]).intra_op
        assert row["policy_threads"] == policy
        assert sorted(int(k) for k in row["seconds"]) == sorted({*counts, policy})
        assert all(seconds > 0 for seconds in row["seconds"].values())
        assert row["policy_vs_fastest"] >= 1.0
