"""The CPU ops' output cache (csrc/cpu/output_memory.cpp): a freed output's memory serves the
next output of its size, never two live outputs at once, and the cache keeps to its limit."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

import bitcodes_ext
from bitcodes_ext import memory

MB = 1 << 20
NUM_BITS = 12


def decode(bits, features):
    """y (tokens, features) of a fixed codebook: a pure function of the bits, so reruns must agree exactly."""
    codebook = torch.randn(2 * NUM_BITS, features, generator=torch.Generator().manual_seed(features))
    return torch.ops.bitcodes_ext.decode(bits, codebook)


def random_bits(tokens, seed):
    return torch.randint(0, 2, (tokens, NUM_BITS), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def empty_cache(native):
    assert memory.cpu_output_cache_limit_bytes() >= 64 * MB, "these tests need the cache on: unset BITCODES_CPU_OUTPUT_CACHE_MB"
    memory.release_cpu_output_cache()
    yield
    memory.release_cpu_output_cache()


def test_a_freed_output_serves_the_next_one_and_is_overwritten(empty_cache):
    bits_a, bits_b = random_bits(4096, 1), random_bits(4096, 2)
    expected = decode(bits_b, 256)  # 4 MB, from fresh memory
    first = decode(bits_a, 256)
    address = first.data_ptr()
    del first
    assert memory.cpu_output_cache_bytes() == 4 * MB
    again = decode(bits_b, 256)
    assert again.data_ptr() == address
    assert memory.cpu_output_cache_bytes() == 0
    torch.testing.assert_close(again, expected, rtol=0, atol=0)  # nothing of bits_a's y left


def test_live_outputs_never_share_memory(empty_cache):
    bits = [random_bits(4096, seed) for seed in range(4)]
    expected = [decode(b, 256) for b in bits]
    del expected[0]  # one freed block in the cache, then three outputs alive at once
    expected.insert(0, decode(bits[0], 256).clone())
    live = [decode(b, 256) for b in bits]
    assert len({y.data_ptr() for y in live}) == len(live)
    for y, want in zip(live, expected):
        torch.testing.assert_close(y, want, rtol=0, atol=0)


def test_a_block_serves_only_outputs_of_its_size(empty_cache):
    small = decode(random_bits(4096, 3), 128)  # 2 MB
    address = small.data_ptr()
    del small
    bits = random_bits(4096, 4)
    expected = decode(bits, 384).clone()  # 6 MB: must not take the 2 MB block
    assert expected.data_ptr() != address
    del expected
    large = decode(bits, 384)
    assert large.data_ptr() != address
    assert memory.cpu_output_cache_bytes() == 2 * MB


def test_outputs_below_one_block_bypass_the_cache(empty_cache):
    y = decode(random_bits(4096, 5), 96)  # 1.5 MB: a 2 MB block would waste a quarter of it
    del y
    assert memory.cpu_output_cache_bytes() == 0


def test_outputs_freed_on_other_threads_return_to_the_cache(empty_cache):
    outputs = [decode(random_bits(4096, seed), 256) for seed in range(3)]
    addresses = {y.data_ptr() for y in outputs}
    thread = threading.Thread(target=outputs.clear)
    thread.start()
    thread.join()
    assert memory.cpu_output_cache_bytes() == 12 * MB
    assert decode(random_bits(4096, 9), 256).data_ptr() in addresses


def test_a_resized_output_keeps_its_values_and_returns_its_old_block(empty_cache):
    y = decode(random_bits(4096, 6), 256)  # 4 MB
    before = y.clone()
    y.resize_(4096, 512)  # 8 MB: a new block from the cache's allocator, the old one returned
    assert memory.cpu_output_cache_bytes() == 4 * MB
    torch.testing.assert_close(y.view(-1)[: before.numel()], before.view(-1), rtol=0, atol=0)


def test_outputs_take_copy_on_write_clones_like_torchs_own(empty_cache):
    y = decode(random_bits(4096, 7), 256)
    before = y.clone()
    lazy = torch._lazy_clone(y)  # needs a DataPtr whose context is its data, as torch's allocator makes
    lazy.add_(1)  # the write copies; y keeps its values
    torch.testing.assert_close(y, before, rtol=0, atol=0)
    torch.testing.assert_close(lazy, before + 1, rtol=0, atol=0)
    del y, lazy
    assert memory.cpu_output_cache_bytes() == 8 * MB  # the write took its own block from this cache


def test_release_frees_every_cached_block(empty_cache):
    outputs = [decode(random_bits(4096, seed), 256) for seed in range(3)]
    del outputs
    assert memory.cpu_output_cache_bytes() == 12 * MB
    assert memory.release_cpu_output_cache() == 12 * MB
    assert memory.cpu_output_cache_bytes() == 0


def test_a_training_step_reuses_its_outputs_with_the_same_gradients(empty_cache):
    torch.manual_seed(0)
    layer = bitcodes_ext.Bitcodes(256, NUM_BITS, 1.0)
    x = torch.randn(4096, 256, requires_grad=True)
    noise = torch.randn(4096, NUM_BITS)
    grads, addresses = [], []
    for _ in range(3):
        y = torch.ops.bitcodes_ext.forward(x, layer.codebook, noise, 1.0, True, False, torch.int64)[0]
        (x_grad, codebook_grad) = torch.autograd.grad(y, (x, layer.codebook), torch.ones_like(y))
        grads.append((x_grad, codebook_grad))
        addresses.append(y.data_ptr())
        del y
    assert addresses[1] == addresses[0] and addresses[2] == addresses[0]  # each step's y in the last one's block
    for x_grad, codebook_grad in grads[1:]:
        torch.testing.assert_close(x_grad, grads[0][0], rtol=0, atol=0)
        torch.testing.assert_close(codebook_grad, grads[0][1], rtol=0, atol=0)


def run_with_limit(limit, script):
    env = dict(os.environ, BITCODES_CPU_OUTPUT_CACHE_MB=limit)
    code = "import torch, bitcodes_ext\nfrom bitcodes_ext import memory\n" + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


FREE_FOUR_4MB_OUTPUTS = """
    codebook = torch.randn(2 * 12, 256)
    outputs = [torch.ops.bitcodes_ext.decode(torch.randint(0, 2, (4096, 12)), codebook) for _ in range(4)]
    del outputs
    print(memory.cpu_output_cache_limit_bytes(), memory.cpu_output_cache_bytes())
"""


@pytest.mark.parametrize("limit, held", [("10", 8 * MB), ("0", 0), ("1024", 16 * MB)])
def test_the_cache_keeps_to_its_limit(native, limit, held):
    result = run_with_limit(limit, FREE_FOUR_4MB_OUTPUTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(int(limit) * MB), str(held)]


def test_past_its_limit_the_cache_gives_back_the_oldest_block(native):
    result = run_with_limit("4", """
        codebook = torch.randn(2 * 12, 256)
        decode = lambda: torch.ops.bitcodes_ext.decode(torch.randint(0, 2, (4096, 12)), codebook)  # 4 MB
        older, newer = decode(), decode()
        addresses = [older.data_ptr(), newer.data_ptr()]
        del older
        del newer  # 8 MB cached past a 4 MB limit: the older block goes
        print(memory.cpu_output_cache_bytes(), addresses.index(decode().data_ptr()))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(4 * MB), "1"]


@pytest.mark.parametrize("value", ["lots", "-1", "99999999999999999999"])
def test_a_bad_limit_names_the_variable(native, value):
    result = run_with_limit(value, FREE_FOUR_4MB_OUTPUTS)
    assert result.returncode != 0
    assert "BITCODES_CPU_OUTPUT_CACHE_MB must be a whole number of MB" in result.stderr
