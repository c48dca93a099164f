"""Python faces of the compiled ops: fake (meta) kernels for torch.compile, and autograd.

The schemas live in csrc/bitcodes.cpp; importing this module requires the extension.
"""

import torch

from . import _extension  # noqa: F401  (loads the schemas before we register against them)
from .reference import compute_dtype

_lib = "bitcodes_ext"


def _per_bit(like: torch.Tensor, num_bits: int):
    return (*like.shape[:-1], num_bits)


@torch.library.register_fake(f"{_lib}::forward")
def _forward_fake(x, codebook, noise, temperature, training, euclidean, bits_dtype=torch.int64):
    num_bits = codebook.shape[0] // 2
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    bits = x.new_empty(_per_bit(x, num_bits), dtype=bits_dtype)
    z = x.new_empty(_per_bit(x, num_bits) if training else (0,), dtype=compute_dtype(x.dtype))
    return y, bits, z


@torch.library.register_fake(f"{_lib}::backward")
def _backward_fake(grad_y, x, codebook, z, temperature, euclidean):
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(codebook)


@torch.library.register_fake(f"{_lib}::decode")
def _decode_fake(bits, codebook):
    return codebook.new_empty((*bits.shape[:-1], codebook.shape[1]))


@torch.library.register_fake(f"{_lib}::decode_backward")
def _decode_backward_fake(grad_y, bits, codebook):
    return torch.empty_like(codebook)


@torch.library.register_fake(f"{_lib}::vq")
def _vq_fake(observations, codebook):
    lead = observations.shape[:-1]
    return observations.new_empty(lead, dtype=torch.int64), observations.new_empty(lead)


def _known_bits(bits):
    """Bits that the forward made or decode already checked, as bool: decode_backward checks
    integer bits for 0/1, which on CUDA costs a host sync (and breaks graph capture)."""
    return bits.bool()


def _forward_setup(ctx, inputs, output):
    x, codebook, _noise, temperature, training, euclidean, _bits_dtype = inputs
    _y, bits, z = output
    ctx.training, ctx.temperature, ctx.euclidean = training, temperature, euclidean
    ctx.save_for_backward(*((x, codebook, z) if training else (bits, codebook)))


def _forward_backward(ctx, grad_y, _grad_bits, _grad_z):
    if ctx.training:
        x, codebook, z = ctx.saved_tensors
        grad_x, grad_codebook = torch.ops.bitcodes_ext.backward(
            grad_y, x, codebook, z, ctx.temperature, ctx.euclidean
        )
        return grad_x, grad_codebook, None, None, None, None, None
    # Eval: bits are an argmax, so only the codebook gets a gradient (as in bitcodes-pytorch).
    bits, codebook = ctx.saved_tensors
    grad_codebook = torch.ops.bitcodes_ext.decode_backward(grad_y, _known_bits(bits), codebook)
    return None, grad_codebook, None, None, None, None, None


def _decode_setup(ctx, inputs, output):
    bits, codebook = inputs
    ctx.save_for_backward(bits, codebook)


def _decode_backward(ctx, grad_y):
    bits, codebook = ctx.saved_tensors
    return None, torch.ops.bitcodes_ext.decode_backward(grad_y, _known_bits(bits), codebook)


torch.library.register_autograd(f"{_lib}::forward", _forward_backward, setup_context=_forward_setup)
torch.library.register_autograd(f"{_lib}::decode", _decode_backward, setup_context=_decode_setup)
