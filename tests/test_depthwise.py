"""The sliced depthwise backward equals torch's gradient (small maps, strides, odd sizes, bias) and the swap
keeps a model's parameters, state dict and forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.train.depthwise import SmallMapDepthwiseConv2d, _DepthwiseFn, use_small_map_backward
from core.train.models import build_model


@pytest.mark.parametrize(("channels", "size", "kernel", "stride", "bias"), [
    (3, 2, 5, 1, False), (4, 4, 5, 1, True), (2, 4, 5, 2, False), (3, 5, 3, 2, True), (2, 2, 3, 1, False),
    (2, 1, 3, 1, True), (3, 6, 7, 1, False),
])
def test_sliced_backward_equals_torch(channels: int, size: int, kernel: int, stride: int, bias: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=bias).double()
    x = torch.randn(3, channels, size, size, dtype=torch.double, requires_grad=True)
    args = (x, conv.weight, conv.bias, conv.stride, conv.padding)
    assert torch.autograd.gradcheck(_DepthwiseFn.apply, args)
    out = _DepthwiseFn.apply(*args)
    grad = torch.randn_like(out)
    mine = torch.autograd.grad(out, [x, conv.weight, *([conv.bias] if bias else [])], grad)
    theirs = torch.autograd.grad(conv(x), [x, conv.weight, *([conv.bias] if bias else [])], grad)
    for a, b in zip(mine, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_swap_keeps_parameters_and_forward_and_gradients_agree() -> None:
    torch.manual_seed(0)
    # no dropout or stochastic depth: the two forwards must draw no random numbers
    model = build_model("efficientnet_b0", 3, "none", dropout=0.0, stochastic_depth=0.0)
    reference = build_model("efficientnet_b0", 3, "none", dropout=0.0, stochastic_depth=0.0)
    reference.load_state_dict(model.state_dict())
    params_before = [id(p) for p in model.parameters()]
    keys_before = list(model.state_dict())
    assert use_small_map_backward(model) == 16  # EfficientNet-B0's depthwise convolutions
    assert sum(isinstance(m, SmallMapDepthwiseConv2d) for m in model.modules()) == 16
    assert [id(p) for p in model.parameters()] == params_before and list(model.state_dict()) == keys_before
    x = torch.randn(4, 3, 64, 64)  # 64 px: the late stages run on 4x4 and 2x2 maps
    model.train()
    reference.train()
    out, ref = model(x), reference(x)
    assert torch.allclose(out, ref, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-5), name
