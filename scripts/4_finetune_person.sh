#!/usr/bin/env bash
# Stage 4: personalized K-fold on top of the global full checkpoint; each fold evaluated on its hold-out.
# Folds run from a queue, one per GPU (8B LoRA r8 ≈ 20 GiB each). Resumable: DONE folds are skipped,
# a killed fold resumes from its last checkpoint. Summaries: runs/<exp>/person_lora/{user_U_summary,overall}.json
# Usage: bash scripts/4_finetune_person.sh GPUS [--lora|--full] [--users 1 2 3] [--fold F] [--config EXP] [--workers N] [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
help_or_first "$0" swift_configs.person "$@"
GPUS=$1; shift
set -x
"$PY" -m swift_configs.person --gpus "$GPUS" "$@"
