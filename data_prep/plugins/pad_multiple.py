"""ms-swift external plugin: training batches padded to a multiple of ``train.pad_to_multiple`` tokens on CUDA
(data_prep/pad_multiple.py; PIGG_PAD_TO_MULTIPLE, 0 or 1: off)."""
from data_prep.pad_multiple import from_env, install

if from_env() > 1:
    install(from_env())
