#!/usr/bin/env bash
# Dataset survey before training: per-user samples, episodes, apps, screen sizes, action mix, exclusive-app
# ratio, fold sizes; DATA/survey/{survey.md, survey.csv, *.png}. Reads built samples only (no image decoding).
# Usage: bash scripts/0_survey.sh [--config EXP] [--data DATA]
set -euo pipefail
source "$(dirname "$0")/common.sh"
set -x
"$PY" -m data_prep survey "$@"
