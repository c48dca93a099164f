"""Seeds, determinism mode, concurrent callers, and a soak run without memory growth."""

import threading

import pytest
import torch

from bitcodes_ext import Bitcodes, functional


def train_step(layer, x):
    x = x.detach().requires_grad_()
    layer.zero_grad()
    y, bits = layer(x)
    y.square().sum().backward()
    return y.detach(), bits, x.grad, layer.codebook.grad.clone()


def test_same_seed_same_training_step(native):
    layer = Bitcodes(24, 12).train()
    x = torch.randn(300, 24)
    torch.manual_seed(3)
    first = train_step(layer, x)
    torch.manual_seed(3)
    second = train_step(layer, x)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_backward_bitwise_reproducible_run_to_run(native):
    layer = Bitcodes(40, 20).train()
    x, noise = torch.randn(2000, 40), torch.randn(2000, 20)
    grads = []
    for _ in range(3):
        x_ = x.clone().requires_grad_()
        layer.zero_grad()
        y, _ = layer(x_, noise)
        y.square().sum().backward()
        grads.append((x_.grad, layer.codebook.grad.clone()))
    for dx, dc in grads[1:]:
        assert torch.equal(dx, grads[0][0]) and torch.equal(dc, grads[0][1])


def test_deterministic_algorithms_mode(native):
    layer = Bitcodes(16, 8).train()
    x = torch.randn(500, 16)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(0)
        first = train_step(layer, x)
        torch.manual_seed(0)
        second = train_step(layer, x)
        assert layer.eval()(x)[0].shape == x.shape and layer.from_bits(first[1]).shape == x.shape
    finally:
        torch.use_deterministic_algorithms(previous)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_under_no_grad_and_inference_mode(native, mode):
    layer = Bitcodes(12, 6).eval()
    x = torch.randn(4, 12)
    expected = layer(x)
    with getattr(torch, mode)():
        y, bits = layer(x)
        assert torch.equal(layer.from_bits(bits), y)
    assert torch.equal(y, expected[0]) and torch.equal(bits, expected[1])
    assert not y.requires_grad


def test_concurrent_callers_get_correct_results(native):
    layers = [Bitcodes(32, 16).eval(), Bitcodes(32, 16, metric="euclidean").eval()]
    inputs = [torch.randn(4000, 32) for _ in layers]
    expected = [layer(x) for layer, x in zip(layers, inputs)]
    failures = []

    def worker(k):
        for _ in range(20):
            y, bits = layers[k](inputs[k])
            if not (torch.equal(y, expected[k][0]) and torch.equal(bits, expected[k][1])):
                failures.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_soak_10000_training_steps_without_memory_growth(native):
    torch.manual_seed(0)
    layer = Bitcodes(16, 8).train()
    optimizer = torch.optim.SGD(layer.parameters(), lr=1e-3)
    x = torch.randn(64, 16)

    def steps(n):
        for _ in range(n):
            y, _ = layer(x)
            optimizer.zero_grad()
            y.square().mean().backward()
            optimizer.step()

    steps(1000)  # allocator pools and caches settle first
    before = rss_mb()
    steps(9000)
    growth = rss_mb() - before
    assert growth < 10, f"RSS grew by {growth:.1f} MB over 9000 steps"
    assert torch.isfinite(layer.codebook).all()
