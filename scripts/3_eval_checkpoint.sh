#!/usr/bin/env bash
# Stage 3: eval a trained checkpoint on every test user (PIGG's "Global" row).
# CKPT: a checkpoint folder or a run folder (runs/<exp>/global_full); --lora: CKPT is an adapter on the base model.
# Usage: bash scripts/3_eval_checkpoint.sh GPUS CKPT [--lora] [--config EXP] [--users 1 2 3] [--name NAME]
set -euo pipefail
source "$(dirname "$0")/common.sh"
help_or_first "$0" eval.users "$@"
GPUS=$1; shift
CKPT=${1:?usage: $0 GPUS CKPT [...]  (--help: every option)}; shift
set -x
"$PY" -m eval.users --devices "$GPUS" --checkpoint "$CKPT" "$@"
