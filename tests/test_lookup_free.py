"""LookupFreeQuantizer (LFQ and BSQ): parity with vector-quantize-pytorch's LFQ, whose state dicts
it loads, the exact entropy loss against a float64 enumeration, and the edges."""

import math

import pytest
import torch
from vector_quantize_pytorch import LFQ

from bitcodes_ext import LookupFreeQuantizer, binary_entropy
from oracle import binary_entropy_oracle

SETTINGS = dict(entropy_weight=0.3, diversity_gamma=0.8, commitment_weight=0.5, codebook_scale=1.5)


def pair(num_bits, features, spherical, inv_temperature=100.0):
    """Our layer and the peer's with the same settings and (if projected) the same weights."""
    theirs = LFQ(dim=features, codebook_size=2**num_bits, entropy_loss_weight=SETTINGS["entropy_weight"],
                 diversity_gamma=SETTINGS["diversity_gamma"], commitment_loss_weight=SETTINGS["commitment_weight"],
                 codebook_scale=SETTINGS["codebook_scale"], spherical=spherical)
    ours = LookupFreeQuantizer(num_bits, features, inv_temperature=inv_temperature, spherical=spherical, **SETTINGS)
    ours.load_state_dict(theirs.state_dict())  # strict: the same keys (their `mask` is dropped)
    return ours, theirs


@pytest.mark.parametrize("spherical", [False, True])
@pytest.mark.parametrize("num_bits,features", [(12, 12), (10, 24), (16, 16)])
def test_eval_equals_the_peer(num_bits, features, spherical):
    ours, theirs = pair(num_bits, features, spherical)
    ours.eval(), theirs.eval()
    x = torch.randn(3, 40, features)
    x[0, :5] = 0  # zeros (and their sign) quantize alike
    quantized, codes, loss = ours(x)
    their_quantized, their_codes, their_loss = theirs(x)
    assert codes.dtype == torch.int64 and torch.equal(codes, their_codes)
    torch.testing.assert_close(quantized, their_quantized, rtol=1e-6, atol=1e-6)
    assert loss == 0 and their_loss == 0
    torch.testing.assert_close(ours.from_codes(codes), theirs.indices_to_codes(codes), rtol=1e-6, atol=1e-6)
    assert torch.equal(ours.from_codes(codes), quantized)


@pytest.mark.parametrize("spherical", [False, True])
@pytest.mark.parametrize("features", [4, 9])
@pytest.mark.parametrize("inv_temperature", [0.3, 0.05])
def test_training_loss_and_gradients_equal_the_peer_where_its_clamp_is_inactive(features, spherical, inv_temperature):
    """With |z| small and a warm softmax, every code probability exceeds the peer's log clamp
    (1e-5), so its entropy is exact too: loss and straight-through gradients agree."""
    num_bits = 4
    ours, theirs = pair(num_bits, features, spherical, inv_temperature)
    x = (torch.randn(2, 30, features) * 0.5).clamp(-1.5, 1.5)
    grads = []
    for layer, call in ((ours, lambda t: ours(t)), (theirs, lambda t: theirs(t, inv_temperature=inv_temperature))):
        layer.train()
        t = x.clone().requires_grad_()
        quantized, codes, loss = call(t)
        (quantized.square().sum() * 0.01 + loss).backward()
        grads.append((quantized.detach(), codes, loss.detach(), t.grad, [p.grad for p in layer.parameters()]))
    (q, c, loss, gx, gp), (q2, c2, loss2, gx2, gp2) = grads
    assert torch.equal(c, c2)
    torch.testing.assert_close(q, q2, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss, loss2, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gx, gx2, rtol=1e-4, atol=1e-7)
    for a, b in zip(gp, gp2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("spherical", [False, True])
@pytest.mark.parametrize("group_size", [None, 3])
def test_training_loss_is_the_exact_entropy_of_the_codebook_softmax(spherical, group_size):
    """loss = w * (per_sample - gamma * codebook) + commitment, the entropies those of the
    softmax over all codes c with logits 2 * inv_temperature * <z, c>, enumerated in float64."""
    num_bits, inv_temperature, scale = 7, 2.5, 1.5
    layer = LookupFreeQuantizer(num_bits, inv_temperature=inv_temperature, codebook_scale=scale,
                                spherical=spherical, group_size=group_size, entropy_weight=0.3,
                                diversity_gamma=0.8, commitment_weight=0.5).double()
    x = torch.randn(50, num_bits, dtype=torch.float64)
    quantized, _, loss = layer(x)
    z = torch.nn.functional.normalize(x, dim=-1) * scale if spherical else x
    codes = torch.tensor([[(c >> (num_bits - 1 - b)) & 1 for b in range(num_bits)] for c in range(2**num_bits)])
    codebook = (codes * 2 - 1).double() * layer.code_value
    if group_size is None:  # the softmax over every code, written out
        probs = (2 * inv_temperature * z @ codebook.T).softmax(-1)
        per_sample = -(probs * probs.log()).sum(-1).mean()
        a = probs.mean(0)
        entropy = -(a * a.log()).sum()
    else:
        per_sample, entropy = binary_entropy_oracle(4 * inv_temperature * layer.code_value * z, group_size)
    commitment = (z - quantized).square().mean()
    torch.testing.assert_close(loss, 0.3 * (per_sample - 0.8 * entropy) + 0.5 * commitment, rtol=1e-10, atol=1e-12)


def test_codes_are_the_bits_msb_first():
    layer = LookupFreeQuantizer(5).eval()
    x = -torch.ones(5, 5)
    for b in range(5):
        x[b, b] = 1.0
    _, codes, _ = layer(x)
    assert codes.tolist() == [16, 8, 4, 2, 1]


def test_zero_and_nan_give_bit_zero():
    layer = LookupFreeQuantizer(3).eval()
    quantized, codes, _ = layer(torch.tensor([[0.0, float("nan"), 2.0], [-0.0, 1.0, -1.0]]))
    assert codes.tolist() == [1, 2]
    assert torch.equal(quantized, torch.tensor([[-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]]))


def test_straight_through_gradient_reaches_x_unchanged():
    layer = LookupFreeQuantizer(6, entropy_weight=0.0).train()
    x = torch.randn(4, 6, requires_grad=True)
    quantized, _, loss = layer(x)
    assert loss == 0
    grad = torch.randn(4, 6)
    (quantized * grad).sum().backward()
    assert torch.equal(x.grad, grad)
    assert torch.equal(quantized, torch.where(x > 0, 1.0, -1.0))


def test_spherical_values_lie_on_the_sphere_of_radius_codebook_scale():
    layer = LookupFreeQuantizer(9, spherical=True, codebook_scale=2.0).eval()
    quantized, codes, _ = layer(torch.randn(20, 9))
    torch.testing.assert_close(quantized.norm(dim=-1), torch.full((20,), 2.0))
    assert torch.equal(quantized.abs(), torch.full_like(quantized, 2.0 / 3.0))


def test_any_leading_dims_and_the_dtype_of_x():
    layer = LookupFreeQuantizer(6, 10).train()
    x = torch.randn(2, 3, 4, 10)
    quantized, codes, loss = layer(x)
    assert quantized.shape == x.shape and codes.shape == (2, 3, 4) and loss.shape == ()
    half = LookupFreeQuantizer(6).train()
    quantized, codes, loss = half(torch.randn(7, 6, dtype=torch.bfloat16))
    assert quantized.dtype == torch.bfloat16 and loss.dtype == torch.float32 and loss.isfinite()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # projections in bf16, quantized in x's dtype
        quantized, _, loss = layer(x)
    assert quantized.dtype == torch.float32 and loss.isfinite()


def test_usage_counts_codes_of_the_whole_codebook():
    layer = LookupFreeQuantizer(3)
    usage = layer.usage(torch.tensor([0, 1, 1, 7]))
    assert float(usage.fraction_used) == 3 / 8
    torch.testing.assert_close(float(usage.perplexity), math.exp(-(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5))))


def test_wide_codes_need_groups_for_the_entropy():
    with pytest.raises(ValueError, match="group_size"):
        LookupFreeQuantizer(30)
    layer = LookupFreeQuantizer(30, group_size=10).train()
    quantized, codes, loss = layer(torch.randn(16, 30))
    assert loss.isfinite() and int(codes.max()) < 2**30
    assert LookupFreeQuantizer(30, entropy_weight=0.0).train()(torch.randn(4, 30))[2] == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_bits=0), "num_bits"),
        (dict(num_bits=63), "num_bits"),
        (dict(num_bits=4.0), "num_bits"),
        (dict(num_bits=4, features=0), "features"),
        (dict(num_bits=4, inv_temperature=0.0), "inv_temperature"),
        (dict(num_bits=4, codebook_scale=float("inf")), "codebook_scale"),
        (dict(num_bits=4, group_size=0), "group_size"),
    ],
)
def test_bad_construction_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LookupFreeQuantizer(**kwargs)


def test_bad_input_is_a_clear_error():
    layer = LookupFreeQuantizer(4, 6)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        layer(torch.ones(2, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 6\)"):
        layer(torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 16\)"):
        layer.from_codes(torch.tensor([16]))
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        layer.from_codes(torch.tensor([1.0]))
