"""ms-swift external plugin: the next epoch's batches made while this epoch trains (data_prep/epoch_prefetch.py)
where the experiment says ``train.epoch_prefetch: true`` (PIGG_EPOCH_PREFETCH=1)."""
import os

from data_prep.epoch_prefetch import ENV, install

if os.environ.get(ENV) == "1":
    install()
