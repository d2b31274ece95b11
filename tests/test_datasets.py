"""Fetch and dataset reading: checksums, corrupt archives, unsafe members, layout."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import yaml

from pipeline.datasets import IMDB, read_imdb, verify_imdb
from pipeline.errors import PipelineError
from tests.conftest import sha256, stage, tiny_params
from tests.tiny_imdb import build_members, write_archive


def raw_dir_with(tmp_path: Path, archive: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "aclImdb_v1.tar.gz").write_bytes(archive.read_bytes())
    return raw


def test_verify_counts_and_full_size_check(tmp_path: Path, tiny_archive: Path) -> None:
    raw = raw_dir_with(tmp_path, tiny_archive)
    counts = verify_imdb(raw, expect_full_size=False)
    assert counts == {"train/pos": 20, "train/neg": 20, "test/pos": 10, "test/neg": 10,
                      "train/unsup": 30}
    with pytest.raises(PipelineError, match=r"incomplete: train/pos: 20 \(expected 12500\)"):
        verify_imdb(raw, expect_full_size=True)


def test_read_imdb_tables(tmp_path: Path, tiny_archive: Path) -> None:
    splits = read_imdb(raw_dir_with(tmp_path, tiny_archive))
    assert len(splits.train) == 40 and len(splits.test) == 20 and len(splits.unlabeled) == 30
    assert set(splits.train["label"]) == {0, 1}
    assert "label" not in splits.unlabeled
    pos = splits.train[splits.train["label"] == 1]
    assert pos["rating"].between(7, 10).all()
    assert splits.train["id"].is_unique


def special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


@pytest.mark.parametrize(("extra", "message"), [
    (lambda: tarfile.TarInfo("aclImdb/../../evil.txt"), "refusing unsafe member"),
    (lambda: tarfile.TarInfo("/etc/evil.txt"), "refusing unsafe member.*absolute"),
    (lambda: special("aclImdb/train/pos/fifo", tarfile.FIFOTYPE), "refusing unsafe member"),
    (lambda: special("aclImdb/dev/tty", tarfile.CHRTYPE), "a device or FIFO"),
])
def test_unsafe_members_are_refused(tmp_path: Path, extra, message: str) -> None:
    info = extra()
    info.size = 1
    archive = write_archive(tmp_path / "a.tar.gz", build_members(2, 2, 2), [info])
    with pytest.raises(PipelineError, match=message):
        verify_imdb(raw_dir_with(tmp_path, archive), expect_full_size=False)


def test_dots_inside_a_name_are_not_a_parent_folder(tmp_path: Path) -> None:
    odd = tarfile.TarInfo("aclImdb/README..old")
    odd.size = 1
    archive = write_archive(tmp_path / "a.tar.gz", build_members(2, 2, 2), [odd])
    assert verify_imdb(raw_dir_with(tmp_path, archive), expect_full_size=False)["train/pos"] == 2


def test_links_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("aclImdb/train/pos/99_9.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = write_archive(tmp_path / "a.tar.gz", build_members(2, 2, 2), [link])
    with pytest.raises(PipelineError, match="refusing link member"):
        verify_imdb(raw_dir_with(tmp_path, archive), expect_full_size=False)


def test_truncated_and_corrupted_archives(tmp_path: Path, tiny_archive: Path) -> None:
    data = tiny_archive.read_bytes()
    truncated = tmp_path / "t" / "aclImdb_v1.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match="corrupted or truncated"):
        verify_imdb(truncated.parent, expect_full_size=False)
    garbage = tmp_path / "g" / "aclImdb_v1.tar.gz"
    garbage.parent.mkdir()
    garbage.write_bytes(b"this is not a gzip file at all" * 10)
    with pytest.raises(PipelineError, match="not a readable .tar.gz"):
        verify_imdb(garbage.parent, expect_full_size=False)


def test_wrong_layout(tmp_path: Path) -> None:
    members = {k: v for k, v in build_members(2, 2, 2).items() if "/test/" not in k}
    archive = write_archive(tmp_path / "a.tar.gz", members)
    with pytest.raises(PipelineError, match="does not have the IMDB layout"):
        verify_imdb(raw_dir_with(tmp_path, archive), expect_full_size=False)


def test_non_utf8_review_is_named(tmp_path: Path) -> None:
    members = build_members(2, 2, 2)
    members["aclImdb/train/pos/0_9.txt"] = b"caf\xe9 au lait"
    archive = write_archive(tmp_path / "a.tar.gz", members)
    with pytest.raises(PipelineError, match=r"aclImdb/train/pos/0_9.txt is not UTF-8"):
        read_imdb(raw_dir_with(tmp_path, archive))


def test_fetch_stage_checksum_mismatch_leaves_nothing(tmp_path: Path, tiny_archive: Path,
                                                      pipeline_env: dict) -> None:
    params = tiny_params(tiny_archive)
    params["fetch"]["mirrors"]["imdb"]["aclImdb_v1.tar.gz"]["sha256"] = "0" * 64
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = stage("fetch", "--params", "params.yaml", "--out", "data/raw", cwd=tmp_path,
                   env=pipeline_env, check=False)
    assert result.returncode == 1
    assert "checksum mismatch for local copy" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "raw").exists()
    assert list((tmp_path / "data").iterdir()) == []  # no temporary left behind either


def test_fetch_stage_refuses_a_misspelt_mirror_name(tmp_path: Path, tiny_archive: Path,
                                                    pipeline_env: dict) -> None:
    """A mirror under a name no dataset has would be skipped and the archive downloaded."""
    params = tiny_params(tiny_archive)
    mirrors = params["fetch"]["mirrors"]["imdb"]
    mirrors["aclImdb_v1.tgz"] = mirrors.pop("aclImdb_v1.tar.gz")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = stage("fetch", "--params", "params.yaml", "--out", "data/raw", cwd=tmp_path,
                   env=pipeline_env, check=False)
    assert result.returncode == 1
    assert ("params.yaml: fetch.mirrors.imdb.aclImdb_v1.tgz: imdb has no such file "
            "(its files: aclImdb_v1.tar.gz)") in result.stderr
    assert "Traceback" not in result.stderr and "downloading" not in result.stdout
    assert not (tmp_path / "data").exists()


def test_fetch_stage_copies_and_records_source(tmp_path: Path, tiny_archive: Path,
                                               pipeline_env: dict) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_archive)))
    stage("fetch", "--params", "params.yaml", "--out", "data/raw", cwd=tmp_path, env=pipeline_env)
    raw = tmp_path / "data" / "raw"
    assert sha256(raw / "aclImdb_v1.tar.gz") == sha256(tiny_archive)
    source = yaml.safe_load((raw / "source.json").read_text())
    assert source["counts"]["train/unsup"] == 30
    assert IMDB.files[0].known_hash == "md5:7c2ac02c03563afcf9b574c7e56c153a"


def test_fetch_without_mirror_downloads_with_pooch(tmp_path: Path, tiny_archive: Path,
                                                   pipeline_env: dict) -> None:
    """No local copy and no network here: the download fails with a clear, actionable error."""
    params = tiny_params(tiny_archive)
    params["fetch"]["mirrors"] = {}
    params["fetch"]["retries"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**pipeline_env, "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = stage("fetch", "--params", "params.yaml", "--out", "data/raw", cwd=tmp_path,
                   env=env, check=False)
    assert result.returncode == 1
    assert "could not download https://ai.stanford.edu" in result.stderr
    assert "fetch.mirrors" in result.stderr
    assert not (tmp_path / "data" / "raw").exists()
