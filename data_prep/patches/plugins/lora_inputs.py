"""ms-swift external plugin (``external_plugins`` in a generated YAML): LoRA inputs stay in the autocast dtype (train.lora_autocast_inputs); the registry entry
``lora_inputs`` (data_prep/patches/__init__.py) decides from its environment variable and the installed versions."""
from data_prep.patches import apply_from_env

apply_from_env("lora_inputs")
