#!/usr/bin/env bash
# The Vanilla / Global / Global+Personalized table (Markdown + CSV) and plots, from result files only.
# Usage: bash scripts/6_report.sh [--config EXP]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
set -x
"${PYTHON:-python3}" -m eval.report "$@"
