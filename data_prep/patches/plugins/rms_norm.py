"""ms-swift external plugin (``external_plugins`` in a generated YAML): Qwen3-VL's RMSNorm as torch's fused operator (train.native_rms_norm); the registry entry
``rms_norm`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("rms_norm")
