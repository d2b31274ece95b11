"""Device, threads, precision and seeds: set once per training stage from params.runtime."""

from __future__ import annotations

import ctypes
import os
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline import distributed
from pipeline.config import RuntimeParams
from pipeline.errors import PipelineError
from pipeline.timing import usable_cores


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for plain fp32

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device), "threads": str(torch.get_num_threads()),
                "precision": "fp32" if self.amp_dtype is None else str(self.amp_dtype)}


# resident memory above which a training step hands the heap's free pages back (below the
# speed issue's 4 GiB per stage, above what one classifier step of 64 x 800 tokens needs)
TRIM_ABOVE_BYTES = 5 * 2**29  # 2.5 GiB


def release_free_memory(above_bytes: int = 0) -> bool:
    """Give the heap's free pages back to the OS (glibc's malloc_trim; no-op elsewhere),
    when the process holds more than ``above_bytes`` resident (0: always).

    Each training step allocates and frees many tensors of varying sizes (length-bucketed
    batches); glibc keeps the freed memory fragmented on its heap, and the LM stage's RSS
    grew to 5.3 GB over 3,000 steps (the classifiers' to 6.5 GB with
    :func:`keep_freed_memory`). Trimming bounds it; checking the resident size after
    every step costs a read of /proc/self/statm. Returns whether it trimmed.
    """
    if _LIBC is None or (above_bytes and resident_bytes() <= above_bytes):
        return False
    _LIBC.malloc_trim(0)
    return True


def resident_bytes() -> int:
    """This process's resident memory (Linux; 0 where /proc/self/statm is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * _PAGE_SIZE


def keep_freed_memory() -> None:
    """Let glibc's malloc reuse freed memory instead of handing it back to the OS at once.

    By default glibc serves every allocation above its mmap threshold (32 MB at most; a
    classifier step's LSTM gates, activations and gradients are up to hundreds of MB each)
    with a fresh mmap and unmaps it on free, so for every step the kernel zero-fills new
    pages again: a fifth of the classifier stages' CPU time went to the kernel. Served from
    the heap and kept there, the blocks are reused from step to step (benchmarks/README.md:
    bench_allocator); :func:`release_free_memory` hands them back once the process holds
    more than ``TRIM_ABOVE_BYTES``.
    """
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_MMAP_MAX, 0)  # no mmap'd chunks: big blocks come from the heap too
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # free() never trims; trimming is ours


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's malloc.h
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to do
        return None


_LIBC = _load_libc()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def thread_count(threads: int) -> int:
    """runtime.threads, or for 0 the cores this process may use shared among the processes
    torchrun started on this machine: each taking every core oversubscribes them, several
    times slower (as does counting the machine's cores where the affinity allows fewer)."""
    if threads:
        return threads
    return max(1, usable_cores() // distributed.local_world_size())


def setup(params: RuntimeParams) -> Runtime:
    """Seed everything, pick the device and precision, turn on deterministic algorithms."""
    if params.device == "cuda" and not torch.cuda.is_available():
        raise PipelineError("runtime.device is 'cuda' but no CUDA device is available")
    device = torch.device("cuda" if params.device != "cpu" and torch.cuda.is_available()
                          else "cpu")
    device = distributed.init(device)  # joins the process group when launched by torchrun
    torch.set_num_threads(thread_count(params.threads))
    # tiny RNN activations underflow to denormals, which ran >10x slower on CPU here
    torch.set_flush_denormal(True)
    seed_everything(params.seed)
    keep_freed_memory()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # CPU kernels are deterministic; on CUDA a few RNN kernels are not (warn, don't fail)
    # (torch.use_deterministic_algorithms sets the same switch, but first imports all of
    # torch.compile's inductor, 1.8 s per stage process, for a flag only compiled code reads;
    # the project compiles nothing)
    torch._C._set_deterministic_algorithms(True, warn_only=device.type == "cuda")
    # ...but not the NaN fill of every torch.empty that deterministic mode adds (it only
    # guards against kernels reading memory they never wrote): on CPU it memset the
    # LSTM's 200 MB oneDNN workspace twice per LM step, ~8% of the step
    torch.utils.deterministic.fill_uninitialized_memory = False
    if params.precision == "fp32":
        amp = None
        # fp32 means fp32: cuDNN's RNNs would otherwise use TF32 (10-bit mantissa) on
        # Ampere and later GPUs, PyTorch's default for cuDNN (not for plain matmuls)
        torch.backends.cudnn.allow_tf32 = False
    elif device.type == "cuda":
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif params.precision == "bf16" and not cpu_has_bf16():
        # oneDNN has no bf16 LSTM without it (a raw "could not create a primitive
        # descriptor" at the first step), and PyTorch emulates bf16 matmuls there
        raise PipelineError("runtime.precision is 'bf16' but this CPU has no native bf16 "
                            "(AVX-512-BF16 or AMX): the LSTM cannot run under bf16 autocast "
                            "here; use auto (bf16 only where the hardware has it) or fp32")
    elif params.precision == "bf16" or cpu_has_bf16():
        amp = torch.bfloat16
    else:
        amp = None
    return Runtime(device, amp)
