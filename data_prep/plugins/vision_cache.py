"""ms-swift external plugin: the frozen vision tower's output kept per screenshot for later epochs
(data_prep/vision_cache.py) where the experiment sets ``train.vision_cache_gib`` above 0 (PIGG_VISION_CACHE_GIB)."""
import os

from data_prep.vision_cache import ENV, install

if float(os.environ.get(ENV, "0") or 0) > 0:
    install()
