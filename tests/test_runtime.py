"""pipeline.runtime.setup: the precision asked for, where the hardware can run it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pipeline.config import RuntimeParams
from pipeline.errors import PipelineError
from pipeline.runtime import release_free_memory, resident_bytes, setup, thread_count


def test_bf16_on_a_cpu_without_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN has no bf16 LSTM there: the first step died with "could not create a
    primitive descriptor for the LSTM forward propagation primitive"."""
    monkeypatch.setattr("pipeline.runtime.cpu_has_bf16", lambda: False)
    with pytest.raises(PipelineError, match="runtime.precision is 'bf16' but this CPU has no "
                                            r"native bf16 \(AVX-512-BF16 or AMX\)"):
        setup(RuntimeParams(device="cpu", threads=1, precision="bf16"))
    assert setup(RuntimeParams(device="cpu", threads=1, precision="auto")).amp_dtype is None


def test_bf16_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.runtime.cpu_has_bf16", lambda: True)
    for precision in ("bf16", "auto"):
        runtime = setup(RuntimeParams(device="cpu", threads=1, precision=precision))
        assert runtime.amp_dtype == torch.bfloat16
    assert setup(RuntimeParams(device="cpu", threads=1, precision="fp32")).amp_dtype is None


def test_setup_turns_on_deterministic_algorithms_without_loading_the_compiler() -> None:
    """torch.use_deterministic_algorithms would import torch.compile's inductor first (1.8 s
    per stage process); setup sets the same switch directly. Checked in a fresh process."""
    code = ("import sys, torch\n"
            "from pipeline.config import RuntimeParams\n"
            "from pipeline.runtime import setup\n"
            "assert not torch.are_deterministic_algorithms_enabled()\n"
            "setup(RuntimeParams(device='cpu', threads=1))\n"
            "print(torch.are_deterministic_algorithms_enabled(),\n"
            "      torch.is_deterministic_algorithms_warn_only_enabled(),\n"
            "      'torch._inductor' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "False", "False"]


def test_threads_default_to_the_cores_shared_among_torchruns_processes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With threads 0 every process torchrun started took every core: 2 processes x 2
    threads on 2 cores, which ran several times slower than 1 thread each."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert thread_count(0) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert thread_count(0) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert thread_count(0) == 1
    assert thread_count(3) == 3  # an explicit count is kept


def test_threads_default_to_the_cores_this_process_may_use_not_the_machines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A container or `taskset` can allow fewer cores than the machine has: one thread per
    machine core would oversubscribe the allowed ones (the tokenize stage counted these
    already; the training stages counted the machine's)."""
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert thread_count(0) == 2


REUSE_CODE = """
import resource, sys, torch
from pipeline.config import RuntimeParams
import pipeline.runtime as runtime
if sys.argv[1] == "glibc":
    runtime.keep_freed_memory = lambda: None
runtime.setup(RuntimeParams(device="cpu", threads=1))

def faults_of_a_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [torch.ones(10_000_000) for _ in range(5)]  # 5 x 40 MB, as a step's activations
    del blocks
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

steps = [faults_of_a_step() for _ in range(8)]
print(sum(steps[-3:]))  # the heap has grown to what a step needs by then
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux")
def test_setup_keeps_freed_memory_for_the_next_step() -> None:
    """Every training step allocates and frees blocks of tens to hundreds of MB. glibc's
    defaults mmap each (above a threshold of at most 32 MB) and unmap it on free, so the
    kernel zero-fills fresh pages for them again every step (~49,000 per 200 MB); after
    setup() the heap keeps the freed blocks for the next step (the classifier step ~1.5x
    faster: benchmarks/bench_allocator.py). In fresh processes: the setting is process-wide."""
    def faults(arm: str) -> int:
        return int(subprocess.run([sys.executable, "-c", REUSE_CODE, arm], capture_output=True,
                                  text=True, check=True).stdout)

    assert faults("glibc") > 100_000  # three steps of fresh pages
    assert faults("keep") < 5_000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc: Linux")
def test_free_memory_is_handed_back_only_above_the_limit() -> None:
    """fit checks after every step: a trim only once the process holds more than the limit
    resident (each trim makes the next steps fault their pages in again)."""
    assert resident_bytes() > 50 * 2**20  # this test process, torch imported
    assert release_free_memory(2**50) is False  # far above what it holds: no trim
    assert release_free_memory(1) is True
    assert release_free_memory() is True  # 0: always (after each evaluation)
