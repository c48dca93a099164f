"""DistributedDataParallel with gloo, 2 CPU processes: the gradients equal single-process
full-batch gradients, in eval and in training with injected noise."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bitcodes_ext import Bitcodes

WORLD = 2
TOKENS, FEATURES, BITS = 64, 12, 6


def data():
    generator = torch.Generator().manual_seed(11)
    x = torch.randn(TOKENS, FEATURES, generator=generator)
    noise = torch.randn(TOKENS, BITS, generator=generator, dtype=torch.float64).float() * 3
    return x, noise


def layer(training):
    torch.manual_seed(5)
    return Bitcodes(FEATURES, BITS, temperature=0.7).train(training)


def full_batch_grads(training):
    x, noise = data()
    model, x = layer(training), x.requires_grad_()
    y, _ = model(x, noise if training else None)
    y.square().mean().backward()
    return model.codebook.grad, x.grad


def ddp_worker(rank, training, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        x, noise = data()
        shard = slice(rank * TOKENS // WORLD, (rank + 1) * TOKENS // WORLD)
        model = torch.nn.parallel.DistributedDataParallel(layer(training))
        x_shard = x[shard].clone().requires_grad_()
        y, _ = model(x_shard, noise[shard] if training else None)
        y.square().mean().backward()  # DDP averages the codebook gradient over the ranks
        torch.save((model.module.codebook.grad, x_shard.grad), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("training", [False, True])
def test_ddp_gradients_equal_full_batch(native, tmp_path, training):
    mp.spawn(ddp_worker, args=(training, str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    codebook_grad, x_grad = full_batch_grads(training)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for rank_codebook_grad, _ in ranks:
        torch.testing.assert_close(rank_codebook_grad, codebook_grad, rtol=1e-5, atol=1e-6)
    if training:  # each rank's loss is a mean over half the tokens: twice the full-batch x gradient
        torch.testing.assert_close(torch.cat([g for _, g in ranks]) / WORLD, x_grad, rtol=1e-5, atol=1e-7)
    else:
        assert all(g is None for _, g in ranks) and x_grad is None
