#!/usr/bin/env bash
# The whole PIGG protocol on the embedded default (synthetic FingerTip data + tiny random Qwen3-VL, CPU),
# through the same launchers a GPU user runs; only the experiment config differs
# (--config swift_configs/experiments/demo_qwen25.yaml: the same on a tiny Qwen2.5-VL, pixel answers).
# Re-running resumes finished stages; --fresh starts over; --user-tokens adds the one-model method
# (user tags: special tokens and text, and the pooled control; 30 epochs each: ~35 more minutes on 2 cores).
# --controls adds the controls (cross-user adapters, the data-efficiency curve, in-context personalization).
# --workers N: person / user-token runs side by side (default 2, one per core of a 2-core box).
# Usage: bash scripts/demo.sh [--fresh] [--user-tokens] [--controls] [--workers N] [--config swift_configs/experiments/demo.yaml]
set -euo pipefail
source "$(dirname "$0")/common.sh"
CFG=$ROOT/swift_configs/experiments/demo.yaml
FRESH=0
TOKENS=0
CONTROLS=0
WORKERS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --fresh) FRESH=1 ;;
    --user-tokens) TOKENS=1 ;;
    --controls) CONTROLS=1 ;;
    --config) CFG=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    -h|--help) usage "$0" ""; exit 0 ;;
    *) echo "usage: $0 [--fresh] [--user-tokens] [--controls] [--workers N] [--config EXP]  (--help)" >&2; exit 2 ;;
  esac
  shift
done
path() { "$PY" -c "from data_prep.config import load_experiment as L; print(L('$CFG')$1)"; }
RAW=$(path "['paths']['raw']"); DATA=$(path "['paths']['data']"); MODEL=$(path "['paths']['model']")
FAMILY=$(path "['model']['family']")
RUNS=$(path "['paths']['runs']")/$(path "['name']")
START=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
run() {  # run a step with its output in runs/<exp>/logs/demo_<name>.log; show the launcher's summary lines
  local log="$RUNS/logs/demo_$1.log"; shift
  mkdir -p "$RUNS/logs"
  if ! "$@" > "$log" 2>&1; then echo "FAILED: $* (log: $log)" >&2; tail -25 "$log" >&2; exit 1; fi
  grep -E "^\[(eval|train|person|tokens|curve|controls)\]|^validate|^wrote" "$log" | grep -v "^\[train\] log:" || true
}

if [ "$FRESH" = 1 ]; then rm -rf "$DATA" "$RUNS"; fi
stage "1/6 synthetic FingerTip-layout data -> samples -> swift JSONL"
[ -d "$RAW" ] || "$PY" -m data_prep synth --out "$RAW" --users 12 --episodes 26 --test-episodes 42 > /dev/null
"$PY" -m data_prep build --config "$CFG" > /dev/null
"$PY" -m data_prep export --config "$CFG" > /dev/null
run data_validate "$PY" -m data_prep validate --config "$CFG"
echo "data: $DATA (report.json lists every skipped step by reason)"
stage "2/6 tiny random model ($FAMILY)"
"$PY" "$ROOT/scripts/build_tiny_model.py" --out "$MODEL" --family "$FAMILY"
stage "3/6 vanilla eval"
run vanilla bash "$ROOT"/scripts/1_vanilla_eval.sh cpu --config "$CFG"
stage "4/6 global full fine-tuning + eval"
run global bash "$ROOT"/scripts/2_finetune_global.sh cpu --full --config "$CFG"
run global_eval bash "$ROOT"/scripts/3_eval_checkpoint.sh cpu "$RUNS/global_full" --config "$CFG"
stage "5/6 personalized LoRA K-fold on top of the global checkpoint"
run person bash "$ROOT"/scripts/4_finetune_person.sh cpu --lora --config "$CFG" --workers "$WORKERS"
if [ "$TOKENS" = 1 ]; then
  stage "5b one model for all users: user tags (special token, text) and the pooled control"
  run tokens bash "$ROOT"/scripts/4b_finetune_user_tokens.sh cpu --config "$CFG" --workers "$WORKERS"
fi
if [ "$CONTROLS" = 1 ]; then
  stage "5c controls: each user's adapter on the others' hold-outs, the data-efficiency curve, in-context"
  run controls bash "$ROOT"/scripts/8_controls.sh cpu --config "$CFG" --workers "$WORKERS"
fi
stage "6/6 report + visualizations"
run visualize bash "$ROOT"/scripts/5_visualize.sh --config "$CFG" --run person_lora --max 2
bash "$ROOT"/scripts/6_report.sh --config "$CFG" 2>/dev/null
echo; echo "demo finished in $(( $(date +%s) - START ))s"
