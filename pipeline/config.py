"""Typed, validated view of params.yaml: the one place settings are checked.

Every stage calls :func:`load_params` first, so a typo or an out-of-range value
fails before any work is done, with the key path in the message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import PipelineError

DEFAULT_PARAMS = Path("params.yaml")


class Section(BaseModel):
    # inf and nan are never a sensible setting (an infinite LR trains to nan and "succeeds")
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# where dvc.yaml's outputs live, and DVC's and git's own folders: no place for checkpoints
OUTPUT_ROOTS = ("data", "models", "reports", ".dvc", ".git")


TABLE_SUFFIXES = (".csv", ".parquet")  # labeled files of data.dataset "files"
TEXT_SUFFIXES = (".txt",)  # unlabeled files may also be plain text, one document per line


def _check_suffix(path: str | None, allowed: tuple[str, ...]) -> str | None:
    """Refuse unsupported formats when params are loaded, not halfway through fetch."""
    if path is not None and not path.lower().endswith(allowed):
        raise ValueError(f"{path!r}: supported formats are {', '.join(allowed)}")
    return path


def _same_file_key(path: str | None) -> Path | None:
    """Where a path points, so ``data/a.csv`` and ``./data/a.csv`` count as one file."""
    return None if path is None else Path(path).expanduser().resolve()


class FilesParams(Section):
    """Your own data (data.dataset: files); paths are relative to the repository root."""

    train: str | None = None  # CSV or Parquet with text_column and label_column
    test: str | None = None
    valid: str | None = None  # None: stratified hold-out from train (prepare.valid_fraction)
    unlabeled: list[str] = []  # extra pretraining text: .txt (a document per line), CSV, Parquet
    text_column: str = Field("text", min_length=1)
    label_column: str = Field("label", min_length=1)
    # train rows sharing a value (an author, a product) stay on one side of the validation
    # hold-out (prepare.valid_split: grouped); unused when a valid file is given
    group_column: str | None = Field(None, min_length=1)

    @field_validator("train", "test", "valid")
    @classmethod
    def _table_format(cls, path: str | None) -> str | None:
        return _check_suffix(path, TABLE_SUFFIXES)

    @field_validator("unlabeled")
    @classmethod
    def _text_format(cls, paths: list[str]) -> list[str]:
        for path in paths:
            _check_suffix(path, TABLE_SUFFIXES + TEXT_SUFFIXES)
        return paths

    @model_validator(mode="after")
    def _columns_differ(self) -> FilesParams:
        if self.text_column == self.label_column:  # the classifiers would read the answer
            raise ValueError(f"text_column and label_column are both {self.text_column!r}")
        if self.group_column in (self.text_column, self.label_column):
            raise ValueError(f"group_column {self.group_column!r} is also the text or label "
                             "column")
        return self

    @model_validator(mode="after")
    def _test_is_held_out(self) -> FilesParams:
        """The test file must not also be read for training, selection or pretraining (its
        text would reach the vocabulary and the language model), nor valid be train."""
        roles = [("train", self.train), ("valid", self.valid),
                 *((f"unlabeled[{i}]", path) for i, path in enumerate(self.unlabeled))]
        test = _same_file_key(self.test)
        for role, path in roles:
            if test is not None and _same_file_key(path) == test:
                raise ValueError(f"test and {role} are the same file ({path}): the test set "
                                 "must be held out from everything the models learn from")
        if self.valid is not None and _same_file_key(self.valid) == _same_file_key(self.train):
            raise ValueError(f"valid and train are the same file ({self.valid}): leave valid "
                             "unset to hold out part of train (prepare.valid_fraction)")
        return self


class DataParams(Section):
    dataset: str = "imdb"
    experiment: str | None = None
    files: FilesParams = FilesParams()

    @model_validator(mode="after")
    def _files_are_given(self) -> DataParams:
        missing = [key for key in ("train", "test") if getattr(self.files, key) is None]
        if self.dataset == "files" and missing:
            raise ValueError("data.dataset is 'files': set "
                             + " and ".join(f"data.files.{key}" for key in missing))
        return self


class MirrorFile(Section):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class FetchParams(Section):
    mirrors: dict[str, dict[str, MirrorFile]] = {}  # dataset -> file name -> local copy
    expect_full_size: bool = True
    retries: int = Field(3, ge=0, le=20)


class PrepareParams(Section):
    valid_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    valid_split: Literal["grouped", "random"] = "grouped"  # grouped: whole movies (IMDB)
    seed: int = Field(13, ge=0, le=2**32 - 1)
    max_train: int | None = Field(None, gt=0)
    max_unlabeled: int | None = Field(None, ge=0)
    max_test: int | None = Field(None, gt=0)


class TokenizeParams(Section):
    lowercase: bool = True
    workers: int = Field(0, ge=0, le=64)  # 0 = one per available core, at most 8
    batch_size: int = Field(1000, gt=0)


class VocabParams(Section):
    min_freq: int = Field(3, ge=1)
    max_size: int = Field(30000, ge=8)


class ModelParams(Section):
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    embedding_dim: int = Field(256, gt=0)
    hidden: int = Field(256, gt=0)
    layers: int = Field(2, ge=1, le=8)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    embedding_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    input_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    weight_dropout: float = Field(0.0, ge=0.0, lt=1.0)  # DropConnect on hidden-to-hidden


class PretrainParams(Section):
    softmax: Literal["adaptive", "full"] = "adaptive"
    adaptive_cutoffs: list[int] = [2000, 10000]
    batch_size: int = Field(64, gt=0)
    bptt: int = Field(70, ge=2)
    epochs: int = Field(1, ge=1)
    steps_per_epoch: int | None = Field(None, gt=0)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    clip: float = Field(0.25, gt=0.0)
    max_documents: int | None = Field(None, gt=0)
    # a warm restart (SGDR-style) after the one-cycle schedule: this many more epochs from its
    # best weights, with a fresh AdamW and a new one-cycle schedule peaking at restart_lr
    # (0 = none); the same as running the stage again with --init on its output
    restart_epochs: int = Field(0, ge=0)
    restart_lr: float = Field(1.5e-3, gt=0.0)

    @model_validator(mode="after")
    def _cutoffs_increase(self) -> PretrainParams:
        cuts = self.adaptive_cutoffs
        if any(c <= 0 for c in cuts) or sorted(set(cuts)) != cuts:
            raise ValueError("adaptive_cutoffs must be strictly increasing positive integers")
        return self


class RNNClassifierParams(Section):
    epochs: int = Field(3, ge=1)
    lr: float = Field(2e-3, gt=0.0)
    # ULMFiT's discriminative LRs: each layer group below the head learns this many times
    # slower than the one above it (2.6 in the paper; 1.0 = one LR for the whole model)
    layer_lr_decay: float = Field(1.0, ge=1.0, le=10.0)
    # ULMFiT's gradual unfreezing: epoch 1 trains the head only, each later epoch unfreezes
    # one more layer group from the top (RNN layers, then the embedding)
    gradual_unfreezing: bool = False
    weight_decay: float = Field(0.01, ge=0.0)
    head_dropout: float = Field(0.3, ge=0.0, lt=1.0)
    # DropConnect on the encoder's hidden-to-hidden matrices while fine-tuning (null = as
    # model.weight_dropout, the language model's): fights overfitting on labeled data
    weight_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    pooling: Literal["concat", "last"] = "concat"  # concat: [last, max, mean] (ULMFiT)
    # adversarial training (Miyato et al. 2017): also train on word vectors perturbed in the
    # loss-increasing direction, this many RMS embedding entries long per review; 0 = off
    adversarial_epsilon: float = Field(0.0, ge=0.0, le=100.0)
    # share of the training steps that are adversarial (spread evenly; the others are plain
    # steps at half the cost): trades its regularization for time
    adversarial_fraction: float = Field(1.0, gt=0.0, le=1.0)
    # virtual adversarial training (Miyato et al. 2017), semi-supervised: every step also
    # takes virtual_adversarial_batch_size reviews of text alone (the unlabeled split and
    # the train split), finds the perturbation of their word vectors, this many RMS
    # embedding entries long, that changes the model's predictions most, and trains the
    # predictions to stay put under it; 0 = off. For few-label runs (README)
    virtual_adversarial_epsilon: float = Field(0.0, ge=0.0, le=100.0)
    virtual_adversarial_batch_size: int = Field(96, gt=0)
    # what rnn_pretrained starts from: the language model's whole encoder, or its word
    # embeddings alone with the RNN layers from a random init (Dai & Le 2015's baseline of
    # an LSTM initialized with word2vec vectors): which half of pretraining pays off.
    # rnn_scratch takes nothing from the language model
    from_language_model: Literal["encoder", "embeddings"] = "encoder"


class BagOfEmbeddingsParams(Section):
    embedding_dim: int = Field(100, gt=0)
    epochs: int = Field(20, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    batch_size: int = Field(64, gt=0)


class BagOfEmbeddingsLMParams(Section):
    """Bag of embeddings whose embeddings start from the language model's (model.embedding_dim)."""

    epochs: int = Field(20, ge=1)
    lr: float = Field(3e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    batch_size: int = Field(64, gt=0)


class NgramLogRegParams(Section):
    """An n-gram + logistic regression baseline (pipeline/ngrams.py: tfidf_logreg,
    nb_logreg): n-grams of the token ids of whole reviews; C is chosen on valid from the
    grid."""

    ngram_max: int = Field(2, ge=1, le=3)  # 2: unigrams and bigrams
    min_df: int = Field(2, ge=1)  # n-grams in fewer training reviews are dropped
    C: list[float] = Field([1.0, 3.0, 10.0, 30.0, 100.0, 300.0], min_length=1)
    max_iter: int = Field(1000, ge=1)

    @field_validator("C")
    @classmethod
    def _positive(cls, grid: list[float]) -> list[float]:
        if any(c <= 0 for c in grid):
            raise ValueError(f"every C must be positive, got {grid}")
        return grid


class ClassifierParams(Section):
    max_len: int = Field(400, ge=4)
    # BPT3C (ULMFiT): read whole reviews in bptt-token chunks; the RNNs back-propagate
    # through the last max_len tokens only. false: truncate reviews to max_len tokens.
    bpt3c: bool = False
    bptt: int = Field(70, ge=1)
    # labeled training examples the classifiers see (a stratified sample of the train split;
    # null = all): few-label studies and learning curves. Pretraining still reads all text.
    train_examples: int | None = Field(None, ge=2)
    # the seed of everything after pretraining: the labeled sample, the classifiers'
    # initialization and batch order, self-training's unlabeled sample. null = runtime.seed.
    # Another value repeats a (few-label) run on another sample with the same language model.
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    batch_size: int = Field(64, gt=0)
    patience: int = Field(2, ge=1)
    clip: float = Field(1.0, gt=0.0)
    rnn_pretrained: RNNClassifierParams = RNNClassifierParams()
    rnn_scratch: RNNClassifierParams = RNNClassifierParams()
    bag_of_embeddings: BagOfEmbeddingsParams = BagOfEmbeddingsParams()
    bag_of_embeddings_lm: BagOfEmbeddingsLMParams = BagOfEmbeddingsLMParams()
    tfidf_logreg: NgramLogRegParams = NgramLogRegParams()
    nb_logreg: NgramLogRegParams = NgramLogRegParams(ngram_max=3, C=[1.0, 3.0, 10.0, 30.0])


class EvaluateParams(Section):
    # memory: samples x test reviews x 4 bytes (10,000 on IMDB's 25,000: 1 GB)
    bootstrap_samples: int = Field(1000, ge=100, le=10_000)
    seed: int = Field(7, ge=0, le=2**32 - 1)
    # also report the pretrained RNN (and the ensemble, the self-trained student) averaged
    # with this n-gram baseline: <rnn>_with_<baseline>; null = off
    hybrid_with: Literal["tfidf_logreg", "nb_logreg"] | None = "nb_logreg"


class RegistryParams(Section):
    """MLflow model registry: where the best classifier of a run is registered."""

    enabled: bool = True
    # Both follow MLflow's rules (mlflow.utils.validation; tests/test_config.py compares
    # them), so a bad name fails when params load, not in evaluate's last step.
    # null = "<experiment name>-classifier"
    model_name: str | None = Field(None, pattern=r"^[^/:]*[^/:\s][^/:]*$")
    # moves only when a new model beats the current one on test
    alias: str = Field("champion", max_length=255, pattern=r"^[\w\-]+$")

    @field_validator("alias")
    @classmethod
    def _alias_not_reserved(cls, alias: str) -> str:
        if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise ValueError(f"MLflow reserves the alias {alias!r} ('latest' and v<number>)")
        return alias


class GateParams(Section):
    """Regression gates checked by ``python -m pipeline.gate`` (scheduled CI)."""

    min_test_accuracy: dict[str, float] = {}  # variant -> minimum test accuracy (0..1)
    max_drop_vs_accepted: float = Field(0.01, ge=0.0, le=1.0)  # accuracy, vs accepted results
    min_pretrained_gain: float | None = None  # rnn_pretrained - bag_of_embeddings accuracy
    # floors for capped (quick) runs, i.e. any prepare.max_* set: fewer examples, lower accuracy
    quick_min_test_accuracy: dict[str, float] = {}
    # test metrics held to max_drop_vs_accepted
    drop_metrics: list[Literal["accuracy", "macro_f1", "roc_auc"]] = ["accuracy"]

    @model_validator(mode="after")
    def _floors_are_fractions(self) -> GateParams:
        for name in ("min_test_accuracy", "quick_min_test_accuracy"):
            for variant, floor in getattr(self, name).items():
                if not 0.0 <= floor <= 1.0:
                    raise ValueError(f"{name}.{variant} must be between 0 and 1, got {floor}")
        return self


class StudyPoint(Section):
    """One experiment of a study: params.yaml overrides (``dvc exp run -S key=value``)."""

    set: dict[str, int | float | bool | str | list[str] | None] = {}
    description: str = ""


class StudiesParams(Section):
    """Experiment sweeps run by ``python -m pipeline.studies`` (not by ``dvc repro``)."""

    # overrides every point of every study starts from (a point's own ``set`` wins)
    common: dict[str, int | float | bool | str | list[str] | None] = {}
    learning_curve: dict[str, StudyPoint] = {}  # point name -> overrides
    ablation: dict[str, StudyPoint] = {}  # the first entry is the base the others change
    pretraining_budget: dict[str, StudyPoint] = {}  # accuracy vs training time; main run too
    full_configuration: dict[str, StudyPoint] = {}  # the large setup meant for a GPU


class EnsembleParams(Section):
    """ULMFiT's backward language model and forward + backward ensemble: ``[backward]``
    (params.yaml's default) makes DVC add the stages pretrain_direction@backward,
    train_direction@backward and ensemble@backward; ``[]`` (or no key) leaves them out."""

    directions: list[Literal["backward"]] = Field([], max_length=1)


Variant = Literal["rnn_pretrained", "rnn_scratch", "bag_of_embeddings", "bag_of_embeddings_lm"]
# any classifier evaluate scores: the PyTorch variants and the scikit-learn baselines
Teacher = Literal["rnn_pretrained", "rnn_scratch", "bag_of_embeddings", "bag_of_embeddings_lm",
                  "tfidf_logreg", "nb_logreg"]


class SelfTrainingParams(Section):
    """Self-training on the unlabeled text (few-label studies): ``teachers: [<variant>]``
    makes DVC add pseudo_label@<variant> (the trained classifier labels the unlabeled
    reviews; the most confident ``per_class`` of each class are kept),
    train_self_trained@<variant>-<student> (each student trains again on the labeled
    examples plus those) and self_training@<variant> (reports/self_training.{json,md});
    ``[]`` (params.yaml's default, or no key) leaves them out."""

    teachers: list[Teacher] = Field([], max_length=1)
    students: list[Variant] = Field(["rnn_pretrained", "bag_of_embeddings_lm"], min_length=1)
    unlabeled: int | None = Field(None, ge=1)  # reviews the teacher labels (seeded; null = all)
    per_class: int = Field(10_000, ge=1)
    # the students' settings: classifier.<student>'s, but for these (ten or more times the
    # few-label examples need neither small batches, long patience nor many RNN epochs)
    batch_size: int = Field(64, gt=0)
    patience: int = Field(2, ge=1)
    rnn_epochs: int = Field(3, ge=1)
    # then each student trains on the labeled examples alone for up to gold_epochs epochs
    # (0 = off), at gold_lr_scale times classifier.<student>'s learning rates, with
    # classifier's batch size and patience; kept only if its valid accuracy improves
    gold_epochs: int = Field(0, ge=0)
    gold_lr_scale: float = Field(0.1, gt=0.0, le=1.0)

    @field_validator("students")
    @classmethod
    def _distinct(cls, students: list[str]) -> list[str]:
        if len(set(students)) != len(students):
            raise ValueError(f"{students}: a student is named twice")
        return students


class RuntimeParams(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0, le=256)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    checkpoint_every: int = Field(200, ge=0)  # optimizer steps; 0 = at epoch ends only
    checkpoint_dir: str = Field(".checkpoints", min_length=1)

    @field_validator("checkpoint_dir")
    @classmethod
    def _outside_outputs(cls, path: str) -> str:
        # checkpoints are named like the models (models/lm.pt <-> <dir>/lm.pt) and deleted
        # once a stage succeeds: inside an output folder they would clobber or pollute outputs
        first = Path(os.path.normpath(path)).parts[0]
        if first in OUTPUT_ROOTS:
            raise ValueError(f"{path!r} is inside {first}/, where the stages write their "
                             "outputs; use a folder of its own (default .checkpoints)")
        return path


class Params(Section):
    data: DataParams
    fetch: FetchParams
    prepare: PrepareParams
    tokenize: TokenizeParams
    vocab: VocabParams
    model: ModelParams
    pretrain: PretrainParams
    classifier: ClassifierParams
    ensemble: EnsembleParams = EnsembleParams()
    self_training: SelfTrainingParams = SelfTrainingParams()
    evaluate: EvaluateParams
    registry: RegistryParams
    gate: GateParams
    runtime: RuntimeParams
    studies: StudiesParams = StudiesParams()

    @property
    def classifier_seed(self) -> int:
        """classifier.seed, or runtime.seed when it is null."""
        return self.runtime.seed if self.classifier.seed is None else self.classifier.seed

    @model_validator(mode="after")
    def _adaptive_tails_have_width(self) -> Params:
        """Each adaptive-softmax tail cluster projects to hidden / 4^i dimensions (i = 1, 2,
        ...): zero would leave its words a uniform, context-free probability, silently."""
        cuts = self.pretrain.adaptive_cutoffs
        if self.pretrain.softmax == "adaptive" and self.model.hidden // 4 ** len(cuts) < 1:
            raise ValueError(
                f"pretrain.adaptive_cutoffs: {len(cuts)} cutoffs need model.hidden >= "
                f"{4 ** len(cuts)} (the last tail cluster projects to hidden / "
                f"{4 ** len(cuts)} dimensions, 0 with hidden {self.model.hidden}); use fewer "
                "cutoffs")
        return self

    @model_validator(mode="after")
    def _scratch_takes_nothing_from_the_language_model(self) -> Params:
        if self.classifier.rnn_scratch.from_language_model != "encoder":
            raise ValueError(
                "classifier.rnn_scratch.from_language_model: rnn_scratch starts from a random "
                "init and takes nothing from the language model; set it on rnn_pretrained")
        return self

    @model_validator(mode="after")
    def _unfreezing_reaches_every_group(self) -> Params:
        """Gradual unfreezing thaws one layer group (embedding, each RNN layer, head) per
        epoch from the top: with fewer epochs than groups the lowest never train."""
        groups = self.model.layers + 2
        for variant in ("rnn_pretrained", "rnn_scratch"):
            settings = getattr(self.classifier, variant)
            if settings.gradual_unfreezing and settings.epochs < groups:
                raise ValueError(
                    f"classifier.{variant}: gradual_unfreezing thaws one of the "
                    f"{groups} layer groups per epoch (embedding, {self.model.layers} RNN "
                    f"layers, head), so with epochs {settings.epochs} the lowest "
                    f"{groups - settings.epochs} never train: set epochs to at least {groups}")
            rnn_epochs = self.self_training.rnn_epochs  # a self-training student's epochs
            if (settings.gradual_unfreezing and self.self_training.teachers
                    and variant in self.self_training.students and rnn_epochs < groups):
                raise ValueError(
                    f"self_training.rnn_epochs: {rnn_epochs} is too few for the student "
                    f"{variant}, whose gradual_unfreezing thaws one of the {groups} layer "
                    f"groups per epoch: set it to at least {groups}")
        return self

    @property
    def experiment_name(self) -> str:
        return self.data.experiment or f"rnn-pretrain-{self.data.dataset}"


VARIANTS: tuple[str, ...] = get_args(Variant)  # the PyTorch classifiers (train stage)
# the scikit-learn baselines (train_ngrams stage; pipeline/ngrams.py) and their weighting
NGRAM_BASELINES: dict[str, str] = {"tfidf_logreg": "tfidf", "nb_logreg": "nb"}
NGRAM_KIND = "ngram_logreg"  # the "kind" their saved dicts hold (pipeline.ngrams)
EVALUATED: tuple[str, ...] = get_args(Teacher)  # what evaluate scores, in this order
# with params.yaml ensemble.directions [backward]: the classifier fine-tuned from the backward LM,
# and the ensemble evaluated from its members' mean test probabilities
BACKWARD_VARIANT = "rnn_pretrained_backward"
ENSEMBLES = {"rnn_pretrained_ensemble": ("rnn_pretrained", BACKWARD_VARIANT)}
HYBRID_RNN = "rnn_pretrained"  # with evaluate.hybrid_with: the RNN each hybrid starts from
SELF_TRAINED = "_self_trained"  # with self_training.teachers: <student>_self_trained
# the language model (its reports/<name>.json) each variant starts from
LANGUAGE_MODEL_OF = {"rnn_pretrained": "pretrain", "rnn_pretrained_backward": "pretrain_backward",
                     "bag_of_embeddings_lm": "pretrain"}


def _describe(error: ValidationError, path: Path) -> str:
    lines = [f"invalid settings in {path}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        elif item["type"] == "missing":
            message = "required key is missing"
        # a check across keys gets the whole section (or file) as its input: the message
        # names the keys, and echoing every setting buried it
        echo = item["type"] != "missing" and not isinstance(item.get("input"), dict)
        lines.append(f"  {key}: {message} (got {item.get('input')!r})" if echo
                     else f"  {key}: {message}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; DVC (ruamel) refuses them: so do we, or a
    stage run on its own would quietly use a value ``dvc repro`` rejects."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"found the key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate params.yaml; raise PipelineError naming every bad key."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"settings file not found: {path.resolve()}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PipelineError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(_describe(exc, path)) from None


def with_overrides(params: Params, overrides: dict[str, object], shown: str) -> Params:
    """``params`` with dotted-key overrides applied (what ``dvc exp run -S key=value``
    will do), validated like params.yaml; ``shown`` names their source in errors."""
    raw = params.model_dump()
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PipelineError(f"{shown}: {dotted} does not name a setting")
        node[leaf] = value
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(_describe(exc, Path(shown))) from None


def flatten_dict(tree: dict) -> dict[str, object]:
    """Nested mappings as flat ``a.b.c`` pairs (leaves: anything but a dict)."""
    flat: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        else:
            flat[prefix] = value

    walk("", tree)
    return flat


def flatten(params: Params, sections: tuple[str, ...] | None = None) -> dict[str, object]:
    """Params as flat ``section.key`` pairs (for MLflow's params table)."""
    dumped = params.model_dump()
    return flatten_dict({name: dumped[name] for name in sections or tuple(dumped)})
