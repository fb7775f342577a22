#!/usr/bin/env bash
# Draw GT (blue), prediction (red) and the scored δ region (ellipse: 14% of width × 14% of height) on screenshots.
# Usage: bash scripts/5_visualize.sh [--config EXP] [--run eval/vanilla | person_lora] [--user 1] [--samples 0 1 2 | --all]
set -euo pipefail
source "$(dirname "$0")/common.sh"
set -x
"$PY" -m eval.visualize "$@"
