#!/usr/bin/env bash
# A language model twice as long (6 x 1,000 steps), in both directions, and what it gives:
# the forward classifier (whole encoder, and the LM's word vectors alone), the backward
# classifier, and (with the n1000 settings) the forward classifier from 1,000 labels.
# Seeds 43 and 44 (classifier.seed: another 1,000 labeled reviews, init and batch order) repeat
# the 1,000-label runs next to the run's own language model and rnn_scratch; seed 43 repeats
# the all-label forward and backward classifiers.
# Last, a forward language model of 12 x 1,000 steps with the same classifiers, and a backward
# one with its all-label classifier (added 2026-12-06).
# One-off experiment, not a stage: it runs the pipeline's own pretrain and train stages on a
# finished default run's data, then scores the models against that run's test predictions.
#
#   bash docs/experiments/longer_lm_ensemble.sh <finished run's root> <out dir> <n1000 params>
#
# <n1000 params>: a params file with the ablation base's settings (the learning curve's n1000
# point, adversarial training on); its rnn_pretrained.from_language_model is set per run.
# Afterwards, in the finished run's root (paired with its committed predictions):
#   python docs/experiments/compare_with_committed_run.py --model <out>/rp_lm6.pt \
#       --model <out>/rpb_lm6.pt --average --vs rnn_pretrained --vs nb_logreg
set -euo pipefail
run=$(realpath "$1"); out=$(realpath -m "$2"); n1000=$(realpath "$3")
data=$run/data/vocab
mkdir -p "$out"
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$out/mlflow.db}

# the default's params with a language model of 6 x 1,000 steps (and its own checkpoints);
# p12: 12 x 1,000 steps
python - "$out" "$n1000" <<'EOF'
import sys
from pathlib import Path

import yaml

from pipeline.config import load_params, with_overrides

out = Path(sys.argv[1])
default, n1000 = load_params(Path("params.yaml")), load_params(Path(sys.argv[2]))
changes = {"pretrain.epochs": 6, "runtime.checkpoint_dir": str(out / "checkpoints"),
           "ensemble.directions": ["backward"]}
for name, params, extra in (
        ("p6", default, {}),
        ("p6_emb", default,
         {"classifier.rnn_pretrained.from_language_model": "embeddings"}),
        ("n1000_enc", n1000, {"classifier.rnn_pretrained.from_language_model": "encoder"}),
        ("n1000_emb", n1000,
         {"classifier.rnn_pretrained.from_language_model": "embeddings"}),
        ("p6_s43", default, {"classifier.seed": 43}),
        ("p12", default,
         {"pretrain.epochs": 12, "runtime.checkpoint_dir": str(out / "checkpoints12")}),
        *((f"n1000_enc_s{seed}", n1000,
           {"classifier.rnn_pretrained.from_language_model": "encoder", "classifier.seed": seed})
          for seed in (43, 44))):
    changed = with_overrides(params, {**changes, **extra}, name)
    (out / f"{name}.yaml").write_text(yaml.safe_dump(changed.model_dump(mode="json"), sort_keys=False))
EOF

for direction in forward backward; do
  suffix=$([ "$direction" = forward ] && echo "" || echo "_backward")
  python -m pipeline.stages.pretrain --direction "$direction" --params "$out/p6.yaml" \
    --data "$data" --out "$out/lm6$suffix.pt" --metrics "$out/pretrain6$suffix.json" \
    --curve "$out/pretrain6$suffix.csv"
done
train() {  # <variant> <params> <lm .pt> <dir> <saved as>
  mkdir -p "$out/$4"
  python -m pipeline.stages.train "$1" --params "$out/$2.yaml" --data "$data" --lm "$3" \
    --out-dir "$out/$4" --reports "$out/$4"
  cp "$out/$4/$1.pt" "$out/$5.pt"  # a unique stem: the name the comparison reports
}
lm6=$out/lm6.pt
train rnn_pretrained p6 "$lm6" fwd rp_lm6
train rnn_pretrained_backward p6 "$out/lm6_backward.pt" bwd rpb_lm6
train rnn_pretrained p6_emb "$lm6" emb rp_emb_lm6
train rnn_pretrained n1000_enc "$lm6" n1000_enc rp_n1000_enc_lm6
train rnn_pretrained n1000_emb "$lm6" n1000_emb rp_n1000_emb_lm6
for seed in 43 44; do
  train rnn_pretrained "n1000_enc_s$seed" "$lm6" "n1000_lm6_s$seed" "rp_n1000_lm6_s$seed"
  train rnn_pretrained "n1000_enc_s$seed" "$run/models/lm.pt" "n1000_lm3_s$seed" "rp_n1000_lm3_s$seed"
  train rnn_scratch "n1000_enc_s$seed" "$lm6" "n1000_rs_s$seed" "rs_n1000_s$seed"
done
train rnn_pretrained p6_s43 "$lm6" fwd_s43 rp_lm6_s43
train rnn_pretrained_backward p6_s43 "$out/lm6_backward.pt" bwd_s43 rpb_lm6_s43

# a forward language model of 12 x 1,000 steps: 1,000 labels (seeds 42-44) and all labels
python -m pipeline.stages.pretrain --params "$out/p12.yaml" --data "$data" --out "$out/lm12.pt" \
  --metrics "$out/pretrain12.json" --curve "$out/pretrain12.csv"
train rnn_pretrained n1000_enc "$out/lm12.pt" n1000_lm12_s42 rp_n1000_lm12_s42
for seed in 43 44; do
  train rnn_pretrained "n1000_enc_s$seed" "$out/lm12.pt" "n1000_lm12_s$seed" "rp_n1000_lm12_s$seed"
done
train rnn_pretrained p6 "$out/lm12.pt" fwd12 rp_lm12
python -m pipeline.stages.pretrain --direction backward --params "$out/p12.yaml" --data "$data" \
  --out "$out/lm12_backward.pt" --metrics "$out/pretrain12_backward.json" \
  --curve "$out/pretrain12_backward.csv"
train rnn_pretrained_backward p6 "$out/lm12_backward.pt" bwd12 rpb_lm12
