"""The documentation's links: every relative link in the repository's Markdown points at a
file that exists, and every #anchor at a heading or an <a id> in that file (as GitHub
renders them), so moving a section cannot silently break the links into it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).parents[1]
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
FENCE = re.compile(r"^\s*(```|~~~)")


def markdown_files() -> list[Path]:
    """The Markdown files git tracks (a clean clone's), not build or cache outputs."""
    listed = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    return [ROOT / name for name in listed]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a '#' comment in a shell block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than
    '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "").lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ID.findall(line))
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(path: Path, cache: dict[Path, set[str]]) -> list[str]:
    broken = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
            if not resolved.exists():
                broken.append(f"{target}: no such file")
                continue
            if anchor and resolved.suffix == ".md":
                if resolved not in cache:
                    cache[resolved] = anchors(resolved)
                if anchor not in cache[resolved]:
                    broken.append(f"{target}: no heading or <a id> {anchor!r} there")
    return broken


def test_slug_follows_githubs_rules() -> None:
    assert slug("Full configuration (for a GPU or a long CPU run): not yet run") == (
        "full-configuration-for-a-gpu-or-a-long-cpu-run-not-yet-run")
    assert slug("Studies: few labels, learning curve, ablation") == (
        "studies-few-labels-learning-curve-ablation")
    assert slug("On one GPU (NVIDIA H100)") == "on-one-gpu-nvidia-h100"
    assert slug("`dvc repro` & *MLflow*") == "dvc-repro--mlflow"


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    """The checker itself: a missing file and a missing anchor are reported, a heading, a
    repeated heading and an <a id> are found, and code is not read as links."""
    (tmp_path / "other.md").write_text("# Top\n## Part\n## Part\n<a id=\"here\"></a>\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#part-1) [ok](other.md#here) [ok](#local)\n## Local\n"
                    "[gone](missing.md) [bad](other.md#nowhere) `[code](x.md)`\n"
                    "```\n[fenced](y.md)\n```\n")
    assert broken_links(page, {}) == ["missing.md: no such file",
                                      "other.md#nowhere: no heading or <a id> 'nowhere' there"]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    assert broken_links(path, {}) == []
