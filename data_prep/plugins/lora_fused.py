"""ms-swift external plugin: the LoRA update added inside one matrix product (data_prep/lora_fused.py) where the
experiment says ``train.lora_fused_add: true`` (PIGG_LORA_FUSED_ADD=1)."""
import os

from data_prep.lora_fused import ENV, install

if os.environ.get(ENV) == "1":
    install()
