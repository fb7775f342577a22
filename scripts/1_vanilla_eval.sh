#!/usr/bin/env bash
# Stage 1: zero-shot eval of the base model on every test user (PIGG's "Vanilla" row).
# 8B bf16 ≈ 17 GiB + activations: one GPU is enough; several GPUs shard the samples.
# Usage: bash scripts/1_vanilla_eval.sh GPUS [--config EXP] [--users 1 2 3] [--batch-size N] [--set key=value]
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS=${1:?usage: $0 GPUS (cpu | 0 | 0,1,2,3) [--config EXP] [--users ...]}; shift
export HF_HUB_OFFLINE=1 MODELSCOPE_OFFLINE=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1} PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -x
"${PYTHON:-python3}" -m eval.users --devices "$GPUS" --name vanilla "$@"
