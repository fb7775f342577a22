"""ms-swift external plugin: Qwen3-VL's RMSNorm as torch's fused operator (data_prep/rms_norm.py) where the
experiment says ``train.native_rms_norm: true`` (PIGG_NATIVE_RMSNORM=1)."""
import os

from data_prep.rms_norm import ENV, install

if os.environ.get(ENV) == "1":
    install()
