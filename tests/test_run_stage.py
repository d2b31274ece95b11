"""pipeline.errors.run_stage: what a stage's process reports and leaves when it fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

STAGE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipeline.errors import run_stage
    from pipeline.io import atomic_path

    def main():
        if sys.argv[2] == "oserror":
            open(Path(sys.argv[1]) / "no-such-folder" / "input.csv").read()
        with atomic_path(Path(sys.argv[1]) / "out") as staged:
            staged.mkdir()
            (staged / "part").write_text("half")
            print("writing", flush=True)
            time.sleep(60)

    run_stage("demo", main)
""")


def start(tmp_path: Path, mode: str, ignore_sigint: bool = False) -> subprocess.Popen:
    # a shell's background job starts with SIGINT ignored: SIGTERM must work there too
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    return subprocess.Popen([sys.executable, "-c", STAGE, str(tmp_path), mode], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ignore)


def test_an_os_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    stdout, stderr = start(tmp_path, "oserror").communicate(timeout=60)
    assert f"[demo] error: No such file or directory: {tmp_path}/no-such-folder/input.csv" \
        in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("ignore_sigint", [False, True])
def test_sigterm_unwinds_and_leaves_no_temporary(tmp_path: Path, ignore_sigint: bool) -> None:
    process = start(tmp_path, "sleep", ignore_sigint)
    assert process.stdout.readline() == "writing\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # staged
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "[demo] interrupted; run the same command again (dvc repro" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary


def test_a_finished_stage_spares_its_exit_the_garbage_collections(tmp_path: Path) -> None:
    """Once main() has returned, every object is frozen out of the collector, so shutting
    down does not run full collections over torch's, MLflow's and pandas' objects (1-3 s a
    stage: benchmarks/bench_stage_exit.py); a failed stage exits as before."""
    code = textwrap.dedent("""
        import atexit, gc, sys
        from pipeline.errors import run_stage
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
        def main():
            if sys.argv[1] == "fail":
                raise OSError(2, "No such file or directory", "x.csv")
        run_stage("demo", main)
    """)
    for mode, frozen, code_expected in (("ok", "True", 0), ("fail", "False", 1)):
        done = subprocess.run([sys.executable, "-c", code, mode], cwd=tmp_path, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True)
        assert done.returncode == code_expected, done.stderr
        assert done.stdout.strip().splitlines()[-1] == f"frozen at exit: {frozen}"
