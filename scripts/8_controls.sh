#!/usr/bin/env bash
# Stage 8: the controls a reviewer asks for (eval/controls.py, swift_configs/data_curve.py):
#   --cross-user  each user's fold adapter on the other users' hold-outs (own vs others': is the gain personal?)
#   --data-curve  per-user LoRA folds trained on n of the fold's samples (controls.data_curve_n), its cost said first
#   --in-context  the global model answering with k of the user's earlier clicks before each sample (no training)
# None of the three: all three. The curve trains on every listed GPU; the evaluations run on the first one.
# Runs after stage 4 (the personalized adapters, the curve's last point). Resumable like the other stages.
# Usage: bash scripts/8_controls.sh GPUS [--cross-user] [--data-curve] [--in-context] [--config EXP] [--set k=v]
#        [--users 1 2] [--fold F] [--workers N] [--model PATH] [--fresh] [--dry-run] [swift key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
help_or_first "$0" eval.controls "$@"
GPUS=$1; shift
CROSS=0; CURVE=0; ICL=0; COMMON=(); TRAIN=(); EVAL=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cross-user) CROSS=1 ;;
    --data-curve) CURVE=1 ;;
    --in-context) ICL=1 ;;
    --config|--set) COMMON+=("$1" "$2"); shift ;;
    --model) EVAL+=("$1" "$2"); shift ;;
    --fresh|--dry-run) TRAIN+=("$1"); EVAL+=("$1") ;;
    *) TRAIN+=("$1") ;;
  esac
  shift
done
if [ $((CROSS + CURVE + ICL)) -eq 0 ]; then CROSS=1; CURVE=1; ICL=1; fi
FIRST=${GPUS%%,*}
set -x
if [ "$CURVE" = 1 ]; then "$PY" -m swift_configs.data_curve --gpus "$GPUS" "${COMMON[@]}" "${TRAIN[@]}"; fi
FLAGS=()
[ "$CROSS" = 1 ] && FLAGS+=(--cross-user)
[ "$ICL" = 1 ] && FLAGS+=(--in-context)
[ "$CURVE" = 1 ] && FLAGS+=(--data-curve)
"$PY" -m eval.controls --devices "$FIRST" "${FLAGS[@]}" "${COMMON[@]}" "${EVAL[@]}"
