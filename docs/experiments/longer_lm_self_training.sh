#!/usr/bin/env bash
# Few labels: the longer language model (12 x 1,000 steps, longer_lm_ensemble.sh) and
# self-training together. With 1,000 labeled reviews (the ablation base: the learning curve's
# n1000 point, adversarial training on), seeds 42-44: nb_logreg trained on the 1,000 reviews
# pseudo-labels the 50,000 unlabeled ones (self_training's defaults: the 10,000 surest per
# class), rnn_pretrained from the 12x LM trains on the 21,000, then on the 1,000 alone
# (gold_epochs 6, kept only if valid improves). Controls: with every seed an rnn_scratch
# student (does pretraining still matter once there are pseudo-labels?), and the same student
# from the run's own 3 x 1,000-step LM (seed 44's trained in a later session, 2026-12-06, with
# this student step alone). Seeds 43-44 also train their own bag_of_embeddings (seed 42's is
# the ablation base's).
# One-off experiment, not a stage: it runs the pipeline's own train_ngrams, pseudo_label and
# train stages on a finished default run's data.
#
#   bash docs/experiments/longer_lm_self_training.sh <finished run's root> <lm .pt> <out dir> \
#       <n1000 params>
#
# Afterwards, in the finished run's root, score the models with
# docs/experiments/compare_with_committed_run.py: seed 42's students with --predictions the
# ablation-base experiment's reports/plots/ (its baselines, nb_logreg among them); seeds 43
# and 44 with --predictions an empty folder, their teacher as --model <out>/s<seed>/nb_logreg.pt
# (then, an n-gram model was loaded by its file's stem, so it could not be copied under
# another name to sit beside a committed nb_logreg; since 2026-12-06 the loader goes by what
# the file holds, and such a copy scores the same: tests/test_inference.py).
set -euo pipefail
run=$(realpath "$1"); lm=$(realpath "$2"); out=$(realpath -m "$3"); n1000=$(realpath "$4")
data=$run/data/vocab
mkdir -p "$out"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$out/mlflow.db}

python - "$out" "$n1000" <<'EOF'
import sys
from pathlib import Path

import yaml

from pipeline.config import load_params, with_overrides

out = Path(sys.argv[1])
n1000 = load_params(Path(sys.argv[2]))
for seed in (42, 43, 44):
    changed = with_overrides(n1000, {
        "classifier.seed": seed, "classifier.rnn_pretrained.from_language_model": "encoder",
        "self_training.teachers": ["nb_logreg"],
        "self_training.students": ["rnn_pretrained", "rnn_scratch"],
        "self_training.gold_epochs": 6,
        "runtime.checkpoint_dir": str(out / f"checkpoints_s{seed}")}, f"st_s{seed}")
    (out / f"st_s{seed}.yaml").write_text(
        yaml.safe_dump(changed.model_dump(mode="json"), sort_keys=False))
EOF

student() {  # <variant> <lm .pt> <saved as>; the seed's $dir and $params
  mkdir -p "$dir/$3"
  python -m pipeline.stages.train "$1" --params "$params" --data "$data" --lm "$2" \
    --pseudo-labels "$dir/pseudo_labels.parquet" --out-dir "$dir/$3" --reports "$dir/$3"
  cp "$dir/$3/$1.pt" "$out/$3.pt"  # a unique stem: the name the comparison reports
}
for seed in 42 43 44; do
  dir=$out/s$seed; params=$out/st_s$seed.yaml
  mkdir -p "$dir"
  python -m pipeline.stages.train_ngrams nb_logreg --params "$params" --data "$data" \
    --out-dir "$dir" --reports "$dir"
  python -m pipeline.stages.pseudo_label nb_logreg --params "$params" --data "$data" \
    --models "$dir" --out "$dir/pseudo_labels.parquet" --report "$dir/pseudo_labels.json"
  student rnn_pretrained "$lm" "st_lm12_s$seed"
  student rnn_scratch "$lm" "st_scratch_s$seed"
  student rnn_pretrained "$run/models/lm.pt" "st_lm3_s$seed"
  if [ "$seed" != 42 ]; then
    mkdir -p "$dir/boe"
    python -m pipeline.stages.train bag_of_embeddings --params "$params" --data "$data" \
      --lm "$lm" --out-dir "$dir/boe" --reports "$dir/boe"
    cp "$dir/boe/bag_of_embeddings.pt" "$out/boe_n1000_s$seed.pt"
  fi
done
