"""benchmarks/bench_ngram_features.py: a smoke run times both sides on synthetic models and
finds their matrices identical; missing inputs are one line, not a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import REPO, run

SCRIPT = "benchmarks/bench_ngram_features.py"


def test_quick_run_times_both_sides_and_finds_the_same_features() -> None:
    result = run([sys.executable, SCRIPT, "--quick"], cwd=REPO, timeout=300)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "ngram_features" and line["config"]["reviews"] == 500
    for name in ("nb_logreg", "tfidf_logreg"):
        assert line[name]["identical"] is True and line[name]["nonzeros"] > 0
        assert line[name]["project_seconds"] > 0 and line[name]["speedup"] > 0


def test_missing_models_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "info.json").write_text(json.dumps({"vocab_sha256": "a" * 64}))
    result = run([sys.executable, SCRIPT, "--data", str(tmp_path), "--models", str(tmp_path)],
                 cwd=REPO, check=False, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"[bench] error: missing model: {tmp_path}/tfidf_logreg.pt "
        "(run the earlier stages: dvc repro)")
    assert "Traceback" not in result.stderr
