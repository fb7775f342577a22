#!/usr/bin/env bash
# Stage 2: global fine-tuning on the global users (PIGG: full FT, lr 1e-6, 1 epoch, effective batch 8).
# 8B full FT: ZeRO-3 over >= 2 GPUs (turned on for > 1 GPU; train.zero_stage); LoRA fits one GPU (~20 GiB).
# Resumable: re-run the same command after a kill; --fresh starts over.
# Usage: bash scripts/2_finetune_global.sh GPUS [--full|--lora] [--config EXP] [--fresh] [--dry-run] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:?usage: $0 GPUS (cpu | 0 | 0,1,2,3) [--full|--lora] [--config EXP] [key=value ...]}; shift
export HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1} PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -x
"${PYTHON:-python3}" -m swift_configs.train --gpus "$GPUS" "$@"
