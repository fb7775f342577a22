"""ms-swift external plugin (``external_plugins`` in a generated YAML): where flash-attn-4 is installed, the lengths
transformers passes its variable-length kernel (``padding_free``) arrive as ints (data_prep/attention.py
``int_varlen_lengths``); nothing changes where it is not installed."""
from data_prep.attention import int_varlen_lengths

int_varlen_lengths()
