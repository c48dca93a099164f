"""FSDP2 (torch.distributed.fsdp.fully_shard) with gloo on 2 CPU processes: a model with Bitcodes
and VectorQuantizer layers, each sharded, takes the same optimizer steps as one process on the
full batch (gradients and updated parameters). VectorQuantizer(ema=True) updates its codebook in
the forward, outside autograd, so it is kept out of sharding (ignored_params) and stays
replicated, as under DDP."""

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from bitcodes_ext import Bitcodes, VectorQuantizer
from test_distributed import WORLD, process_group, shard_of

TOKENS, FEATURES, BITS, CODES, STEPS = 64, 12, 6, 16, 2


def data():
    generator = torch.Generator().manual_seed(21)
    x = torch.randn(STEPS, TOKENS, FEATURES, generator=generator)
    noise = torch.randn(STEPS, TOKENS, BITS, generator=generator) * 3
    return x, noise


class Model(nn.Module):
    def __init__(self, ema):
        super().__init__()
        torch.manual_seed(5)
        self.encoder = nn.Linear(FEATURES, FEATURES)
        self.bitcodes = Bitcodes(FEATURES, BITS, temperature=0.7)
        self.quantizer = VectorQuantizer(CODES, FEATURES, ema=ema, decay=0.9)
        self.decoder = nn.Linear(FEATURES, FEATURES)

    def forward(self, x, noise):
        y, _ = self.bitcodes(self.encoder(x), noise)
        quantized, _, loss = self.quantizer(y)
        return self.decoder(quantized).square().mean() + loss


def train(model, tokens):
    """STEPS SGD steps on the given tokens of each batch; the gradients of the last step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, noise = data()
    for step in range(STEPS):
        optimizer.zero_grad()
        model(x[step, tokens], noise[step, tokens]).backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
    return grads


def full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def fsdp_worker(rank, ema, store, out):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    with process_group(rank, store):
        model = Model(ema)
        mesh = init_device_mesh("cpu", (WORLD,))
        ignored = {model.quantizer.codebook} if ema else None
        fully_shard(model.bitcodes, mesh=mesh)
        fully_shard(model.quantizer, mesh=mesh, ignored_params=ignored)
        fully_shard(model, mesh=mesh, ignored_params=ignored)
        assert type(model.bitcodes.codebook).__name__ == "DTensor"  # sharded over the ranks
        grads = train(model, shard_of(rank))
        state = {
            "grads": {name: full(g) for name, g in grads.items()},
            "params": {name: full(p.detach()) for name, p in model.named_parameters()},
            "buffers": {name: b.clone() for name, b in model.named_buffers()},
        }
        torch.save(state, os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.parametrize("ema", [False, True])
def test_fsdp2_steps_equal_full_batch(native, tmp_path, ema):
    mp.spawn(fsdp_worker, args=(ema, str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    model = Model(ema)
    grads = train(model, slice(None))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    expected_grads = {"bitcodes.codebook", "encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"}
    if not ema:
        expected_grads.add("quantizer.codebook")
    assert set(grads) == expected_grads
    for state in ranks:
        assert set(state["grads"]) == set(grads)
        for name, grad in grads.items():  # FSDP averages each gradient over the ranks
            torch.testing.assert_close(state["grads"][name], grad, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
        for name, param in model.named_parameters():
            torch.testing.assert_close(state["params"][name], param.detach(), rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
        for name, buffer in model.named_buffers():
            torch.testing.assert_close(state["buffers"][name], buffer, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    # Training changed what the test compares.
    assert not torch.equal(ranks[0]["params"]["bitcodes.codebook"], Model(ema).bitcodes.codebook.detach())
    assert not torch.equal(ranks[0]["params"]["quantizer.codebook"], Model(ema).quantizer.codebook.detach())
