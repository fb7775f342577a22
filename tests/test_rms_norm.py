"""data_prep/patches/rms_norm.py: Qwen3-VL's RMSNorm as torch's fused operator on CUDA bf16 inputs; transformers' own forward
everywhere else (the CPU float32 demo is unchanged to the bit)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture()
def norm():
    from data_prep.patches import rms_norm

    cls = rms_norm._norm_class()
    torch.manual_seed(0)
    m = cls(256, eps=1e-6)
    torch.nn.init.normal_(m.weight, 1.0, 0.2)
    rms_norm.install()
    yield m
    rms_norm.uninstall()
    assert not hasattr(cls.forward, "_pigg_original")  # transformers' forward back


def test_cpu_inputs_run_transformers_forward(norm):
    from data_prep.patches import rms_norm

    x = torch.randn(3, 7, 256) * 3
    original = rms_norm._norm_class().forward._pigg_original
    assert torch.equal(norm(x), original(norm, x))  # float32 on CPU: the same function, the same bits
    xb, nb = x.bfloat16(), norm.bfloat16()
    assert torch.equal(nb(xb), original(nb, xb))


def test_fused_operator_is_the_same_norm(norm):
    """What the CUDA path computes (F.rms_norm with the module's weight and eps) against transformers' formula: within
    one bf16 rounding (the fused operator multiplies by the weight before its one rounding; transformers rounds
    before and after), and to float32 precision on float64 inputs (transformers computes in float32)."""
    import torch.nn.functional as F

    from data_prep.patches import rms_norm

    original = rms_norm._norm_class().forward._pigg_original
    x = torch.randn(64, 256, dtype=torch.float64) * 3
    m64 = norm.double()
    assert torch.allclose(F.rms_norm(x, (256,), m64.weight, m64.variance_epsilon), original(m64, x), rtol=1e-6)
    xb, mb = x.bfloat16(), norm.bfloat16()
    ref, got = original(mb, xb).float(), F.rms_norm(xb, (256,), mb.weight, mb.variance_epsilon).float()
    ulp = torch.finfo(torch.bfloat16).eps * ref.abs().clamp_min(1e-3)
    assert ((got - ref).abs() <= ulp).all()
    assert not torch.equal(got, ref)  # the rounding differs somewhere: the comparison above is not vacuous
