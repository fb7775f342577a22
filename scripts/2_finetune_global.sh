#!/usr/bin/env bash
# Stage 2: global fine-tuning on the global users (PIGG: full FT, lr 1e-6, 1 epoch, effective batch 8).
# 8B full FT: ZeRO-3 over >= 2 GPUs (turned on for > 1 GPU; train.zero_stage); LoRA fits one GPU (~20 GiB).
# Resumable: re-run the same command after a kill; --fresh starts over.
# Usage: bash scripts/2_finetune_global.sh GPUS [--full|--lora] [--config EXP] [--fresh] [--dry-run] [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
help_or_first "$0" swift_configs.train "$@"
GPUS=$1; shift
set -x
"$PY" -m swift_configs.train --gpus "$GPUS" "$@"
