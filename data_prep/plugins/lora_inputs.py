"""ms-swift external plugin: LoRA inputs stay in the autocast dtype (data_prep/lora_inputs.py) where the
experiment says ``train.lora_autocast_inputs: true`` (PIGG_LORA_AUTOCAST_INPUTS=1)."""
import os

from data_prep.lora_inputs import ENV, install

if os.environ.get(ENV) == "1":
    install()
