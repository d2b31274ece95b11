"""Tokenize throughput: ``pipeline.text.tokenize`` with a process pool vs single-process spaCy.

Project ("A"): ``pipeline.text.tokenize_to_arrow(texts, lowercase, workers=2, batch_size)``,
the tokenize stage's way (a fork pool, one ``pipeline.text.ChunkTokenizer`` per process:
spaCy's tokenizer run once per distinct space-separated chunk, with the same output; each
batch sent back as one Arrow ``list<string>`` array, which the stage writes to Parquet as
it is). Also timed: the same with ``workers=1`` ("one process": the chunk cache alone).
``--output lists`` times ``pipeline.text.tokenize`` instead (the same pool sending back
Python lists of strings, as the stage did before).
Reference ("B"): ``spacy.blank("en").tokenizer.pipe`` in the main process, with the same
per-token rule (drop whitespace tokens, lowercase).

Texts: the first ``--limit`` reviews (archive order) streamed out of the IMDB tar.gz, never
extracted, cleaned with ``pipeline.text.clean_text``; reading is not timed. Each timed run
starts from the texts and ends with every review's tokens in memory, setup included (the pool
and its tokenizers for A, the blank pipeline for B); spaCy is imported once up front for
both (the stage's workers import it once per split, ~1 s). Runs alternate A B A B ...;
the figures are median tokens/s and the speed-up A / B (target >= 1.8 with 2 workers).
The outputs of A, one process and B are compared token for token: the script fails if they
differ.

Ceiling ("C"): the machine's own limit for this work. Two forked processes each run B on
half of the texts at the same time and send nothing back; B time / C time is the best a
2-process tokenizer can do here (two busy cores slow each other: shared caches, memory
bandwidth, the hypervisor). It bounds splitting spaCy's own work over two processes; A does
less work than B (the chunk cache), so A can pass it.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import spacy
from common import REPO, emit, log, median, rounded, timed

from pipeline.config import load_params
from pipeline.datasets import IMDB_ARCHIVE, IMDB_MEMBER
from pipeline.text import clean_text, tokenize, tokenize_to_arrow

TARGET_SPEEDUP = 1.8


def default_archive() -> Path:
    """The IMDB mirror named in params.yaml (resolved from the repo), else data/raw's copy."""
    try:
        mirror = load_params(REPO / "params.yaml").fetch.mirrors["imdb"][IMDB_ARCHIVE].path
        path = (REPO / mirror).resolve()
        if path.is_file():
            return path
    except Exception:  # any params problem: fall back to the fetched copy
        pass
    return REPO / "data" / "raw" / IMDB_ARCHIVE


def read_reviews(archive: Path, limit: int) -> list[str]:
    """The first ``limit`` reviews of the archive (streamed, stops early), cleaned."""
    texts: list[str] = []
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            if not (member.isfile() and IMDB_MEMBER.match(member.name)):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            texts.append(clean_text(handle.read().decode("utf-8")))
            if len(texts) >= limit:
                break
    return texts


def project_run(texts: list[str], workers: int, batch_size: int, output: str) -> list:
    if output == "arrow":
        return list(tokenize_to_arrow(texts, True, workers, batch_size))
    return [tokens for batch in tokenize(texts, True, workers, batch_size) for tokens in batch]


def as_lists(output: list, kind: str) -> list[list[str]]:
    """The project's output (``--output`` kind) as one token list per review (untimed)."""
    if kind == "arrow":
        return [tokens for array in output for tokens in array.to_pylist()]
    return output


def reference_run(texts: list[str]) -> list[list[str]]:
    tokenizer = spacy.blank("en").tokenizer
    return [[t.text.lower() for t in doc if not t.is_space]
            for doc in tokenizer.pipe(texts, batch_size=256)]


_halves: list[list[str]] = []  # the ceiling's inputs, inherited by its forked workers


def _reference_half(index: int) -> int:
    return sum(len(doc) for doc in reference_run(_halves[index]))


def ceiling_run(texts: list[str], workers: int) -> int:
    """B on 1/workers of the texts in each of ``workers`` processes at once; token count."""
    share = -(-len(texts) // workers)
    _halves[:] = [texts[i:i + share] for i in range(0, len(texts), share)]
    with get_context("fork").Pool(workers) as pool:
        return sum(pool.map(_reference_half, range(len(_halves)), chunksize=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=None,
                        help="IMDB aclImdb_v1.tar.gz (default: params.yaml's mirror)")
    parser.add_argument("--limit", type=int, default=20_000, help="reviews to tokenize")
    parser.add_argument("--workers", type=int, default=2, help="project tokenizer processes")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts per pool task (default: params tokenize.batch_size)")
    parser.add_argument("--output", choices=("arrow", "lists"), default="arrow",
                        help="what the project's workers send back (arrow: the stage's way)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved A/B repeats")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 reviews, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.repeats = min(args.limit, 2_000), 2
    archive = args.archive or default_archive()
    batch_size = args.batch_size or load_params(REPO / "params.yaml").tokenize.batch_size
    if not archive.is_file():
        sys.exit(f"IMDB archive not found: {archive} (pass --archive)")

    log(f"reading {args.limit:,} reviews from {archive}")
    read_seconds, texts = timed(lambda: read_reviews(archive, args.limit))
    if len(texts) <= batch_size:
        log(f"WARNING: {len(texts)} texts fit in one batch of {batch_size}: "
            "tokenize() then runs in-process, not in a pool")
    log(f"{len(texts):,} reviews read in {read_seconds:.1f} s; {args.repeats} repeats, "
        f"workers={args.workers}, batch_size={batch_size}")

    runs: dict[str, Callable[[], object]] = {
        "project": lambda: project_run(texts, args.workers, batch_size, args.output),
        "one_process": lambda: project_run(texts, 1, batch_size, args.output),
        "reference": lambda: reference_run(texts),
        "ceiling": lambda: ceiling_run(texts, args.workers),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    first: dict[str, object] = {}
    tokens = 0
    for repeat in range(1, args.repeats + 1):
        for name, run in runs.items():
            elapsed, output = timed(run)
            seconds[name].append(elapsed)
            if name not in first:
                first[name] = output
            if name == "reference":  # the project's tokens are checked identical below
                tokens = sum(len(doc) for doc in output)
            del output
        if repeat == 1:
            identical = (as_lists(first["project"], args.output) == first["reference"]
                         == as_lists(first["one_process"], args.output))
            first.clear()
            if not identical:
                sys.exit("FAILED: the project's tokens differ from single-process spaCy's")
        log(f"repeat {repeat}/{args.repeats}: project {seconds['project'][-1]:.2f} s "
            f"(one process {seconds['one_process'][-1]:.2f} s), "
            f"reference {seconds['reference'][-1]:.2f} s, ceiling {seconds['ceiling'][-1]:.2f} s")

    def figures(name: str) -> dict:
        secs = median(seconds[name])
        return {"seconds": rounded(secs), "tokens_per_s": round(tokens / secs),
                "docs_per_s": round(len(texts) / secs),
                "samples_s": [rounded(s) for s in seconds[name]]}

    speedup = median(seconds["reference"]) / median(seconds["project"])
    ceiling = median(seconds["reference"]) / median(seconds["ceiling"])
    project_function = "tokenize_to_arrow" if args.output == "arrow" else "tokenize"
    emit("tokenize", {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"archive": str(archive), "reviews": len(texts), "tokens": tokens,
                   "workers": args.workers, "batch_size": batch_size, "output": args.output,
                   "repeats": args.repeats, "quick": args.quick},
        "outputs_identical": True,
        "project": {**figures("project"),
                    "what": f"pipeline.text.{project_function}(workers={args.workers})"},
        "reference": {**figures("reference"),
                      "what": "spacy.blank('en').tokenizer.pipe in the main process"},
        "speedup": rounded(speedup),
        "speedup_is": "reference seconds / project seconds (medians)",
        "one_process": {**figures("one_process"),
                        "what": f"pipeline.text.{project_function}(workers=1): the chunk "
                                "cache alone, no pool"},
        "one_process_speedup": rounded(median(seconds["reference"])
                                       / median(seconds["one_process"])),
        "ceiling": {**figures("ceiling"),
                    "what": f"the reference on 1/{args.workers} of the texts in each of "
                            f"{args.workers} processes at once, nothing sent back"},
        "ceiling_speedup": rounded(ceiling),
        "share_of_ceiling": rounded(speedup / ceiling),
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": bool(speedup >= TARGET_SPEEDUP),
    })


if __name__ == "__main__":
    main()
