"""The trained models as a user gets them, on one tiny `dvc repro`: the MLflow pyfunc model of
each training run, `mlflow models predict` / `serve`, the registry alias and
`python -m pipeline.predict`. Real DVC, MLflow and subprocesses; nothing is mocked."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline.config import VARIANTS, load_params
from pipeline.predict import main as predict_main
from pipeline.registry import register_best
from pipeline.serving import TextClassifier
from tests.conftest import TinyRun, copy_project, restored_mlflow_tracking_uri, run, stage

pytestmark = pytest.mark.slow

MODEL_NAME = "rnn-pretrain-imdb-classifier"  # registry.model_name null -> "<experiment>-classifier"
REVIEWS = ["One of the best films I have seen: moving, funny and beautifully shot.",
           "Dull <br /><br />and far too long &amp; the ending makes no sense.",
           "Ça m'a plu — a charming little film",
           ""]


# ---------------------------------------------------------------- helpers (also used by
# test_tracking_server.py): subprocess servers on localhost, always stopped by their PID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_process(cmd: list[str], log: Path, env: dict, cwd: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group: servers fork workers that must die with it."""
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_answers(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM the process group led by ``proc`` (its PID), then SIGKILL after 15 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers can outlive a leader that exits first


def port_closed(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.3)
    return False


def post_json(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def check_predictions(rows: list[dict], count: int) -> None:
    assert len(rows) == count
    for row in rows:
        assert set(row) == {"label", "probability", "prob_neg", "prob_pos"}
        assert row["label"] in ("neg", "pos")
        assert row["probability"] == pytest.approx(max(row["prob_neg"], row["prob_pos"]))
        assert row["prob_neg"] + row["prob_pos"] == pytest.approx(1.0, abs=1e-5)
        assert row["probability"] == row[f"prob_{row['label']}"]


# ---------------------------------------------------------------- fixtures


def mlflow_env(root: Path) -> dict:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_run: TinyRun) -> Path:
    return copy_project(tiny_run.root, tmp_path_factory.mktemp("serving") / "repo")


@pytest.fixture
def client(project: Path) -> Iterator[MlflowClient]:
    with restored_mlflow_tracking_uri():
        mlflow.set_tracking_uri(mlflow_env(project)["MLFLOW_TRACKING_URI"])
        yield MlflowClient()


def training_run(project: Path, variant: str) -> str:
    return json.loads((project / "reports" / "train" / f"{variant}.json").read_text())[
        "mlflow_run_id"]


def local_predictions(project: Path, variant: str, texts: list[str]) -> pd.DataFrame:
    return TextClassifier.from_files(project / "models" / f"{variant}.pt",
                                     project / "data" / "vocab" / "vocab.json",
                                     lowercase=True).predict(texts)


def champion_variant(client: MlflowClient) -> str:
    return client.get_model_version_by_alias(MODEL_NAME, "champion").tags["variant"]


# ---------------------------------------------------------------- tests


def test_each_training_run_logs_a_self_contained_model(project: Path, client: MlflowClient,
                                                       tmp_path: Path) -> None:
    for variant in VARIANTS:
        run_id = training_run(project, variant)
        models = client.search_logged_models(
            [client.get_run(run_id).info.experiment_id],
            filter_string=f"source_run_id = '{run_id}'")
        assert [m.name for m in models] == ["model"], variant
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{models[0].model_id}",
                                                         dst_path=str(tmp_path / variant)))
        meta = mlflow.models.Model.load(local / "MLmodel")
        assert meta.signature.inputs.input_names() == ["text"]
        assert meta.signature.inputs.input_types()[0].name == "string"
        assert meta.signature.outputs.input_names() == ["label", "probability", "prob_neg",
                                                        "prob_pos"]
        assert [t.name for t in meta.signature.outputs.input_types()] == [
            "string", "double", "double", "double"]
        for path in ("artifacts/vocab.json", "artifacts/tokenizer.json",
                     f"artifacts/{variant}.pt", "code/pipeline/serving.py",
                     "code/pipeline/text.py"):
            assert (local / path).is_file(), (variant, path)
        assert not list(local.rglob("*.pkl")), "nothing is pickled: the model is built from code"
        assert json.loads((local / "artifacts/tokenizer.json").read_text())["lowercase"] is True

    # loaded elsewhere (another cwd), the model imports the code it was logged with and
    # predicts exactly what the checkpoint predicts through TextClassifier
    variant = "rnn_pretrained"
    script = ("import json, sys, mlflow, pandas as pd\n"
              "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
              "import pipeline.serving\n"
              "out = model.predict(pd.DataFrame({'text': json.loads(sys.argv[2])}))\n"
              "print(json.dumps({'file': pipeline.serving.__file__,"
              " 'rows': out.to_dict(orient='records')}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script, f"runs:/{training_run(project, variant)}"
                             "/model", json.dumps(REVIEWS)], cwd=tmp_path, capture_output=True,
                            text=True, env={**env, **mlflow_env(project)}, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "/code/pipeline/serving.py" in loaded["file"]
    assert not loaded["file"].startswith(str(project / "pipeline"))
    check_predictions(loaded["rows"], len(REVIEWS))
    expected = local_predictions(project, variant, REVIEWS)
    assert [r["label"] for r in loaded["rows"]] == expected["label"].tolist()
    assert [r["prob_pos"] for r in loaded["rows"]] == pytest.approx(
        expected["prob_pos"].tolist(), abs=1e-6)


def test_mlflow_models_predict_on_raw_csv(project: Path, client: MlflowClient,
                                          tmp_path: Path) -> None:
    pd.DataFrame({"text": REVIEWS}).to_csv(tmp_path / "reviews.csv", index=False)
    result = run(["mlflow", "models", "predict", "-m", f"models:/{MODEL_NAME}@champion",
                  "-i", "reviews.csv", "-t", "csv", "-o", "out.json", "--env-manager", "local"],
                 cwd=tmp_path, env=mlflow_env(project))
    rows = json.loads((tmp_path / "out.json").read_text())["predictions"]
    check_predictions(rows, len(REVIEWS))
    expected = local_predictions(project, champion_variant(client), REVIEWS)
    assert [r["prob_pos"] for r in rows] == pytest.approx(expected["prob_pos"].tolist(),
                                                          abs=1e-6), result.stderr[-2000:]


def test_mlflow_models_serve_answers_invocations(project: Path, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    uri = f"runs:/{training_run(project, 'bag_of_embeddings')}/model"
    proc = start_process(["mlflow", "models", "serve", "-m", uri, "-h", "127.0.0.1",
                          "-p", str(port), "-w", "1", "--env-manager", "local"],
                         log, mlflow_env(project), cwd=tmp_path)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/ping", proc, log, timeout=120)
        frame = pd.DataFrame({"text": REVIEWS})
        status, body = post_json(f"http://127.0.0.1:{port}/invocations",
                                 {"dataframe_split": frame.to_dict(orient="split")})
        assert status == 200, body
        check_predictions(body["predictions"], len(REVIEWS))
        expected = local_predictions(project, "bag_of_embeddings", REVIEWS)
        assert [r["prob_pos"] for r in body["predictions"]] == pytest.approx(
            expected["prob_pos"].tolist(), abs=1e-6)
        # the signature is enforced: a request without a `text` column is a client error
        status, body = post_json(f"http://127.0.0.1:{port}/invocations",
                                 {"dataframe_split": {"columns": ["review"], "data": [["x"]]}})
        assert status == 400 and "text" in json.dumps(body)
    finally:
        stop_process(proc)
    assert port_closed(port), "the scoring server (uvicorn worker) outlived the stop"


def test_python_m_pipeline_predict(project: Path, client: MlflowClient, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    env = mlflow_env(project)

    def parsed(output: str) -> list[tuple[str, float]]:
        lines = [line.split("\t") for line in output.strip().splitlines()]
        return [(label, float(probability)) for label, probability, _ in lines]

    def in_process(*args: str) -> tuple[int, str, str]:
        code = predict_main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    texts = REVIEWS[:3]
    # as a user runs it, in the project: models/rnn_pretrained.pt + data/vocab/vocab.json
    default = run([sys.executable, "-m", "pipeline.predict", *texts], cwd=project, env=env)
    expected = local_predictions(project, "rnn_pretrained", texts)
    assert [label for label, _ in parsed(default.stdout)] == expected["label"].tolist()
    assert [p for _, p in parsed(default.stdout)] == pytest.approx(
        expected["probability"].tolist(), abs=1e-4)

    monkeypatch.chdir(project)
    (tmp_path / "reviews.txt").write_text("\n".join(texts) + "\n\n")
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "reviews.csv", index=False)
    for name in ("reviews.txt", "reviews.csv"):
        assert in_process("--file", str(tmp_path / name)) == (0, default.stdout, "")

    # the registered champion through MLflow == its checkpoint read directly
    variant = champion_variant(client)
    via_mlflow = run([sys.executable, "-m", "pipeline.predict", "--model-uri",
                      f"models:/{MODEL_NAME}@champion", *texts], cwd=project, env=env).stdout
    code, direct, _ = in_process("--model", f"models/{variant}.pt", *texts)
    assert code == 0 and via_mlflow == direct and len(parsed(direct)) == 3

    code, _, err = in_process("--model", "models/lm.pt", "x")
    assert code == 1 and "not a classifier" in err
    code, _, err = in_process("--file", str(tmp_path / "missing.csv"))
    assert code == 1 and "not found" in err
    (tmp_path / "bad.csv").write_text("review\nx\n")
    code, _, err = in_process("--file", str(tmp_path / "bad.csv"))
    assert code == 1 and "no 'text' column" in err


def test_registry_alias_moves_only_for_a_better_model(project: Path,
                                                      client: MlflowClient) -> None:
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    accuracy = {v: metrics["classifiers"][v]["test"]["accuracy"] for v in VARIANTS}
    best = max(accuracy, key=lambda v: accuracy[v])
    first = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(first.version) == "1"  # registered by the pipeline's evaluate stage
    assert first.tags["variant"] == best
    assert float(first.tags["test_accuracy"]) == accuracy[best]
    assert first.run_id == training_run(project, best)

    def versions() -> int:
        return len(client.search_model_versions(f"name = '{MODEL_NAME}'"))

    def holder() -> str:
        return str(client.get_model_version_by_alias(MODEL_NAME, "champion").version)

    # rerunning evaluate on the same models registers a version that only ties: no move
    stage("evaluate", cwd=project, env=mlflow_env(project))
    assert versions() == 2 and holder() == "1"

    params = load_params(project / "params.yaml")
    sources = {v: training_run(project, v) for v in VARIANTS}
    held = accuracy[best]
    test_set = f"imdb:{metrics['dataset']['test']}"  # what the evaluate stage passes
    worse = register_best(params, sources, {"rnn_pretrained": held - 0.3, "rnn_scratch": held - 0.2,
                                            "bag_of_embeddings": held - 0.1}, test_set)
    assert worse is not None and worse.variant == "bag_of_embeddings" and not worse.alias_moved
    assert versions() == 3 and holder() == "1"

    # better, but on another (e.g. capped) test set: not comparable, no move
    elsewhere = register_best(params, sources, {v: 1.0 for v in VARIANTS}, "imdb:5")
    assert elsewhere is not None and not elsewhere.alias_moved
    assert versions() == 4 and holder() == "1"

    better = register_best(params, sources, {"rnn_pretrained": held, "rnn_scratch": held + 0.1,
                                             "bag_of_embeddings": held - 0.1}, test_set)
    assert better is not None and better.alias_moved and better.previous == "1"
    assert holder() == better.version == "5"
    moved = client.get_model_version(MODEL_NAME, better.version)
    assert moved.run_id == sources["rnn_scratch"] and moved.tags["variant"] == "rnn_scratch"

    disabled = params.model_copy(update={"registry": params.registry.model_copy(
        update={"enabled": False})})
    assert register_best(disabled, sources, {v: 1.0 for v in VARIANTS}) is None
    assert versions() == 5 and holder() == "5"
