"""Stage 1 — fetch: get the dataset's source files, verified, into data/raw/.

A local mirror listed in params (fetch.mirrors) is used when it exists; otherwise
the public source is downloaded with pooch (retries, progress bar, download cache
under $PIPELINE_CACHE_DIR or the OS cache dir) and checked against its published hash.

For ``data.dataset: files`` the files named in params (data.files) are copied instead,
so data/raw — a DVC output — holds exactly what the later stages read.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pooch

from pipeline.config import FilesParams, load_params
from pipeline.datasets import (
    OWN_FILES,
    OWN_FILES_MANIFEST,
    REGISTRY,
    Dataset,
    SourceFile,
    get_dataset,
    own_files_layout,
)
from pipeline.errors import PipelineError, run_stage
from pipeline.io import atomic_path, file_sha256, write_json
from pipeline.workspace import main_repo_root, user_path


def download_cache() -> Path:
    return Path(os.environ.get("PIPELINE_CACHE_DIR") or pooch.os_cache("rnn-pretrain-pipeline"))


def from_mirror(source: SourceFile, path: Path, sha256: str, dest: Path) -> str:
    actual = file_sha256(path)
    if actual != sha256.lower():
        raise PipelineError(
            f"checksum mismatch for local copy {path}: sha256 is {actual}, "
            f"params.yaml (fetch.mirrors) expects {sha256}"
        )
    shutil.copyfile(path, dest)
    return f"sha256:{actual}"


def download(source: SourceFile, retries: int, dest: Path) -> str:
    fetcher = pooch.create(
        path=download_cache(),
        base_url="",
        registry={source.name: source.known_hash},
        urls={source.name: source.url},
        retry_if_failed=retries,
    )
    try:
        cached = fetcher.fetch(source.name, progressbar=True)
    except ValueError as exc:  # pooch's checksum mismatch
        raise PipelineError(f"download of {source.url} failed verification: {exc}") from exc
    except OSError as exc:
        raise PipelineError(
            f"could not download {source.url} ({exc}). Offline? Point fetch.mirrors "
            f"in params.yaml at a local copy of {source.name}."
        ) from exc
    shutil.copyfile(cached, dest)
    return source.known_hash


def fetch_sources(dataset: Dataset, mirrors: dict, retries: int, staging: Path) -> dict:
    provenance = {}
    for source in dataset.files:
        mirror = mirrors.get(source.name)
        target = staging / source.name
        local = user_path(mirror.path) if mirror is not None else None
        if local is not None and local.exists():
            print(f"[fetch] using local copy {mirror.path}")
            checksum = from_mirror(source, local, mirror.sha256, target)
            origin = mirror.path  # as given: the same on every clone
        else:
            if mirror is not None:
                print(f"[fetch] local copy {mirror.path} not found; downloading")
            checksum = download(source, retries, target)
            origin = source.url
        provenance[source.name] = {"origin": origin, "checksum": checksum}
    return provenance


def copy_own_files(settings: FilesParams, staging: Path) -> dict:
    """Copy the files named in data.files next to a manifest; record each one's sha256.

    The copies make data/raw change whenever a file's content changes, and
    prepare reads only data/raw, never the originals.
    """
    layout = own_files_layout(settings)
    entries = [(key, layout[key]) for key in ("train", "valid", "test") if layout[key]]
    entries += [(f"unlabeled[{i}]", e) for i, e in enumerate(layout["unlabeled"])]
    provenance = {}
    for key, entry in entries:
        source = user_path(entry["origin"])
        if not source.is_file():
            problem = "is a folder, not a file" if source.is_dir() else "file not found"
            raise PipelineError(f"data.files.{key}: {problem}: {entry['origin']} "
                                f"(paths are relative to {main_repo_root()})")
        try:
            shutil.copyfile(source, staging / entry["name"])
        except OSError as exc:
            raise PipelineError(f"data.files.{key}: cannot read {entry['origin']}: "
                                f"{exc.strerror or exc}") from None
        provenance[entry["name"]] = {"origin": entry["origin"],
                                     "checksum": f"sha256:{file_sha256(staging / entry['name'])}"}
    write_json(staging / OWN_FILES_MANIFEST, layout)
    return provenance


def check_mirror_names(mirrors: dict, shown: str) -> None:
    """A misspelt dataset or file name in fetch.mirrors would be skipped without a word
    (and the file downloaded instead): name it."""
    for dataset_name, files in mirrors.items():
        if dataset_name not in REGISTRY or not REGISTRY[dataset_name].files:
            known = ", ".join(name for name, d in REGISTRY.items() if d.files)
            raise PipelineError(f"{shown}: fetch.mirrors.{dataset_name}: no such dataset "
                                f"with files to download (known: {known})")
        names = [source.name for source in REGISTRY[dataset_name].files]
        for file_name in files:
            if file_name not in names:
                raise PipelineError(f"{shown}: fetch.mirrors.{dataset_name}.{file_name}: "
                                    f"{dataset_name} has no such file (its files: "
                                    f"{', '.join(names)})")


def fetch(dataset: Dataset, mirrors: dict, retries: int, expect_full_size: bool,
          out_dir: Path, own_files: FilesParams | None = None) -> None:
    with atomic_path(out_dir) as staging:
        staging.mkdir()
        if dataset.name == OWN_FILES:
            assert own_files is not None
            provenance = copy_own_files(own_files, staging)
        else:
            provenance = fetch_sources(dataset, mirrors, retries, staging)
        counts = dataset.verify(staging, expect_full_size)
        write_json(staging / "source.json",
                   {"dataset": dataset.name, "files": provenance, "counts": counts})
    print(f"[fetch] {dataset.name}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/raw")
    args = parser.parse_args()
    params = load_params(args.params)
    dataset = get_dataset(params.data.dataset)
    check_mirror_names(params.fetch.mirrors, args.params)
    fetch(dataset, params.fetch.mirrors.get(dataset.name, {}), params.fetch.retries,
          params.fetch.expect_full_size, Path(args.out), params.data.files)


if __name__ == "__main__":
    run_stage("fetch", main)
