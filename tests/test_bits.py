"""to_bits / to_decimal / pack_bits / unpack_bits."""

import numpy as np
import pytest
import torch

from bitcodes_ext import pack_bits, to_bits, to_decimal, unpack_bits

# The bitcodes-pytorch README's example.
README_BITS = torch.tensor([[[0, 0, 0, 0], [1, 0, 1, 1], [1, 0, 0, 1], [1, 0, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0]]])
README_INDICES = torch.tensor([[0, 11, 9, 8, 7, 2]])


def test_readme_example():
    assert torch.equal(to_decimal(README_BITS), README_INDICES)
    assert torch.equal(to_bits(README_INDICES, num_bits=4), README_BITS)


def test_msb_first():
    assert to_bits(torch.tensor(1), 3).tolist() == [0, 0, 1]
    assert to_decimal(torch.tensor([1, 0, 0])).item() == 4


@pytest.mark.parametrize("num_bits", [1, 7, 8, 31, 63])
def test_round_trip(num_bits):
    bits = torch.randint(0, 2, (5, 3, num_bits))
    assert torch.equal(to_bits(to_decimal(bits), num_bits), bits)
    high = torch.randint(0, 2**62, (100,)) >> (63 - num_bits)
    assert torch.equal(to_decimal(to_bits(high, num_bits)), high)


def test_bool_bits():
    bits = torch.randint(0, 2, (4, 10))
    assert torch.equal(to_decimal(bits.bool()), to_decimal(bits))


@pytest.mark.parametrize("num_bits,group_size", [(8, 4), (10, 4), (64, 16), (100, 7), (5, 8), (3, 1)])
def test_grouped_round_trip(num_bits, group_size):
    bits = torch.randint(0, 2, (6, num_bits))
    groups = to_decimal(bits, group_size=group_size)
    assert groups.shape == (6, -(-num_bits // group_size))
    assert torch.equal(to_bits(groups, num_bits, group_size=group_size), bits)


def test_grouped_values_read_msb_first():
    bits = torch.tensor([1, 0, 1, 1, 0, 1, 1, 0, 1, 1])
    # groups of 4: 1011, 0110, and the short last group 11
    assert to_decimal(bits, group_size=4).tolist() == [11, 6, 3]


def test_more_than_63_bits_needs_group_size():
    with pytest.raises(ValueError, match="group_size"):
        to_decimal(torch.zeros(2, 64, dtype=torch.long))


@pytest.mark.parametrize("num_bits", [1, 8, 9, 64, 100])
def test_pack_round_trip(num_bits):
    bits = torch.randint(0, 2, (3, 4, num_bits))
    packed = pack_bits(bits)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 4, -(-num_bits // 8))
    assert torch.equal(unpack_bits(packed, num_bits), bits)


def test_pack_matches_numpy_packbits():
    bits = torch.randint(0, 2, (7, 21))
    assert (pack_bits(bits).numpy() == np.packbits(bits.numpy().astype(np.uint8), axis=-1)).all()


def test_readme_values_pack():
    assert pack_bits(README_BITS).flatten().tolist() == [v << 4 for v in README_INDICES.flatten().tolist()]


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: to_decimal(torch.tensor([0.0, 1.0])), TypeError, "bits must be an integer or bool"),
        (lambda: to_decimal(torch.tensor([0, 2])), ValueError, "only 0 and 1"),
        (lambda: to_bits(torch.tensor([1.5]), 3), TypeError, "indices must be an integer"),
        (lambda: to_bits(torch.tensor([1]), 0), ValueError, "num_bits must be an integer in"),
        (lambda: to_bits(torch.tensor([1]), 64), ValueError, "num_bits must be an integer in"),
        (lambda: to_bits(torch.tensor([[1, 2]]), 10, group_size=4), ValueError, r"shape \(\.\.\., 3\)"),
        (lambda: to_decimal(torch.tensor([0, 1]), group_size=0), ValueError, "group_size"),
        (lambda: pack_bits(torch.tensor([0, 3])), ValueError, "only 0 and 1"),
        (lambda: unpack_bits(torch.tensor([1]), 8), TypeError, "uint8"),
        (lambda: unpack_bits(torch.tensor([1], dtype=torch.uint8), 9), ValueError, r"shape \(\.\.\., 2\)"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
