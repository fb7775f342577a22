#!/usr/bin/env bash
# Stage 7: a deployable personalized model: merge a fold's LoRA into its base (swift export --merge_lora),
# written next to the run (runs/<exp>/person_lora/user_U/fold_F/merged/). 8B: ~17 GB on disk, ~20 GB of RAM.
# Usage: bash scripts/7_export.sh GPU (cpu | 0) --user U --fold F [--run person_lora] [--config EXP] [--fresh]
set -euo pipefail
source "$(dirname "$0")/common.sh"
help_or_first "$0" swift_configs.export "$@"
GPU=$1; shift
set -x
"$PY" -m swift_configs.export --gpus "$GPU" "$@"
