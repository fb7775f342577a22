#!/usr/bin/env bash
# Stage 4: personalized K-fold on top of the global full checkpoint; each fold evaluated on its hold-out.
# Folds run from a queue, one per GPU (8B LoRA r8 ≈ 20 GiB each). Resumable: DONE folds are skipped,
# a killed fold resumes from its last checkpoint. Summaries: runs/<exp>/person_lora/{user_U_summary,overall}.json
# Usage: bash scripts/4_finetune_person.sh GPUS [--lora|--full] [--users 1 2 3] [--fold F] [--config EXP] [--workers N] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:?usage: $0 GPUS (cpu | 0 | 0,1,2,3) [--lora|--full] [--users ...] [--fold F]}; shift
export HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1} PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -x
"${PYTHON:-python3}" -m swift_configs.person --gpus "$GPUS" "$@"
