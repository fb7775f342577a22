"""Remote code off unless asked for: ms-swift 4.6 loads every model folder with ``trust_remote_code=True``
(``ModelLoader.default_trust_remote_code``, and a hard-coded ``AutoConfig.from_pretrained(..., trust_remote_code=True)``
in ``swift.model.model_meta._get_model_info``), i.e. it would run Python files shipped inside the folder. Qwen3-VL and
Qwen2.5-VL are transformers' own classes and need none of it. ``install(on)`` sets swift's default to ``on`` and puts
a switched AutoConfig where swift's model_meta calls it; the experiment key is ``model.trust_remote_code``
(PIGG_TRUST_REMOTE_CODE in a child). A folder that needs its own code then fails to load with transformers' error.
Imports swift only when installed.
"""
from __future__ import annotations


class _SwitchedAutoConfig:
    """transformers' AutoConfig as swift's model_meta sees it: trust_remote_code follows the switch."""

    def __init__(self, auto_config):
        self.auto_config = auto_config

    def from_pretrained(self, *args, **kwargs):
        from swift.model.register import ModelLoader

        kwargs["trust_remote_code"] = ModelLoader.default_trust_remote_code
        return self.auto_config.from_pretrained(*args, **kwargs)


def _drop_untrue_warning(record) -> bool:
    """swift warns 'Loading ... with trust_remote_code=True' before every load: not so while the switch is off."""
    from swift.model.register import ModelLoader

    return ModelLoader.default_trust_remote_code or "with trust_remote_code=True" not in record.getMessage()


def install(on: bool) -> None:
    """Whether swift's model loaders (config, processor, weights) may run code shipped in a model folder."""
    from swift.model import model_meta
    from swift.model.register import ModelLoader
    from swift.utils import get_logger

    ModelLoader.default_trust_remote_code = bool(on)
    if not isinstance(model_meta.AutoConfig, _SwitchedAutoConfig):
        model_meta.AutoConfig = _SwitchedAutoConfig(model_meta.AutoConfig)
    logger = get_logger()
    if _drop_untrue_warning not in logger.filters:
        logger.addFilter(_drop_untrue_warning)



def uninstall() -> None:
    """swift's own AutoConfig and default back."""
    from swift.model import model_meta
    from swift.model.register import ModelLoader

    if isinstance(model_meta.AutoConfig, _SwitchedAutoConfig):
        model_meta.AutoConfig = model_meta.AutoConfig.auto_config
    ModelLoader.default_trust_remote_code = True
