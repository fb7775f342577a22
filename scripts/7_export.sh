#!/usr/bin/env bash
# Stage 7: a deployable personalized model: merge a fold's LoRA into its base (swift export --merge_lora),
# written next to the run (runs/<exp>/person_lora/user_U/fold_F/merged/). 8B: ~17 GB on disk, ~20 GB of RAM.
# Usage: bash scripts/7_export.sh GPU (cpu | 0) --user U --fold F [--run person_lora] [--config EXP] [--fresh]
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=${1:?usage: $0 GPU (cpu | 0) --user U --fold F [--config EXP]}; shift
export HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1} PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -x
"${PYTHON:-python3}" -m swift_configs.export --gpus "$GPU" "$@"
