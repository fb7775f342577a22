#!/usr/bin/env bash
# Stage 1: zero-shot eval of the base model on every test user (PIGG's "Vanilla" row).
# 8B bf16 ≈ 17 GiB + activations: one GPU is enough; several GPUs shard the samples.
# Usage: bash scripts/1_vanilla_eval.sh GPUS [--config EXP] [--users 1 2 3] [--batch-size N] [--set key=value]
set -euo pipefail
source "$(dirname "$0")/common.sh"
help_or_first "$0" eval.users "$@"
GPUS=$1; shift
set -x
"$PY" -m eval.users --devices "$GPUS" --name vanilla "$@"
