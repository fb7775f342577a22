"""ms-swift external plugin (``external_plugins`` in a generated YAML): the LoRA update added inside one matrix product (train.lora_fused_add); the registry entry
``lora_fused`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("lora_fused")
