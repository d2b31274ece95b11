#!/usr/bin/env bash
# The real pretrain and train stages with and without pipeline.runtime.keep_freed_memory,
# alternating (benchmarks/README.md: the row after bench_allocator's). Usage, from the
# repository root, with a full run's vocab stage output:
#   bash docs/experiments/allocator_stage_ab.sh <data/vocab of a full run> [rounds]
# Works in a scratch folder (its own params.yaml, MLflow db, models); prints one line per run:
# the stage's own "done in" time, the epoch's elapsed seconds, and /usr/bin/time's figures.
set -euo pipefail
data=$(realpath "$1")
rounds=${2:-2}
repo=$(pwd)
work=$(mktemp -d /tmp/allocator-ab.XXXX)
cd "$work"
python - "$repo/params.yaml" <<'EOF'
import sys, yaml
params = yaml.safe_load(open(sys.argv[1]))
params["data"]["experiment"] = "allocator-ab"
params["pretrain"].update(epochs=1, steps_per_epoch=200)
params["classifier"]["train_examples"] = 4000
params["classifier"]["rnn_scratch"]["epochs"] = 1
params["registry"]["enabled"] = False
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
EOF
for round in $(seq 1 "$rounds"); do
  for arm in glibc keep; do
    switch=""
    [ "$arm" = glibc ] && switch="import pipeline.runtime as r; r.keep_freed_memory = lambda: None"
    for stage in pretrain train; do
      if [ "$stage" = pretrain ]; then
        args=(--params params.yaml --data "$data" --out models/lm.pt
              --metrics reports/pretrain.json --curve reports/curves/pretrain.csv)
      else
        args=(rnn_scratch --params params.yaml --data "$data" --out-dir models --reports reports)
      fi
      log="$stage-$arm-$round.log"
      PYTHONPATH="$repo" /usr/bin/time -f "%e s wall, %U s user, %S s system, peak %M KB" \
        python -c "import runpy, sys
$switch
sys.argv = ['stage'] + sys.argv[1:]
runpy.run_module('pipeline.stages.$stage', run_name='__main__')" "${args[@]}" > "$log" 2>&1
      echo "round $round $arm $stage: $(grep -a -o 'done in [0-9.]* s' "$log")," \
           "$(grep -a -o 'elapsed_seconds=[0-9.]*' "$log" | tail -1), $(tail -1 "$log")"
    done
  done
done
echo "logs in $work"
