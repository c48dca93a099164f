"""DistributedDataParallel with gloo, 2 CPU processes: Bitcodes gradients equal single-process
full-batch gradients (eval, and training with injected noise), VectorQuantizer keeps every
rank's EMA codebook identical and equal to the full-batch one, and binary_entropy's codebook
entropy and its gradients are those of the whole batch."""

import contextlib
import gc
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bitcodes_ext import Bitcodes, VectorQuantizer, binary_entropy

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


@contextlib.contextmanager
def process_group(rank, store):
    """Every DDP object is gone and both ranks are done before the group is torn down: a gloo
    group freed during interpreter shutdown instead sometimes aborts the worker at exit
    ("terminate called without an active exception") after all its work succeeded."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        yield
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def shard_of(rank):
    return slice(rank * TOKENS // WORLD, (rank + 1) * TOKENS // WORLD)


def ddp_grads(rank, training):
    x, noise = data()
    model = torch.nn.parallel.DistributedDataParallel(layer(training))
    x_shard = x[shard_of(rank)].clone().requires_grad_()
    y, _ = model(x_shard, noise[shard_of(rank)] if training else None)
    y.square().mean().backward()  # DDP averages the codebook gradient over the ranks
    return model.module.codebook.grad, x_shard.grad


def ddp_worker(rank, training, store, out):
    with process_group(rank, store):
        torch.save(ddp_grads(rank, training), os.path.join(out, f"rank{rank}.pt"))


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


# VectorQuantizer under DDP: the EMA statistics are all-reduced, so every rank's codebook equals
# the one a single process gets from the full batch; restarted dead codes agree across ranks.
CODES = 16


class EncoderQuantizer(torch.nn.Module):
    """What users wrap in DDP: a trainable encoder, then the EMA quantizer (which has no
    trainable parameter of its own)."""

    def __init__(self, **kwargs):
        super().__init__()
        torch.manual_seed(3)
        self.encoder = torch.nn.Linear(FEATURES, FEATURES)
        self.quantizer = VectorQuantizer(CODES, FEATURES, ema=True, decay=0.9, **kwargs)

    def forward(self, x):
        return self.quantizer(self.encoder(x))

    def state(self):
        q = self.quantizer
        return q.codebook.detach(), q.cluster_size, q.embed_sum


def record_restarts(quantizer):
    """Wraps the quantizer's dead-code restart to record, per step: which codes were dead, the
    rank's batch of vectors, and the restarted codes' vectors, usage and sums afterwards."""
    restarts, restart = [], quantizer._restart_dead_codes

    def recorded(flat):
        dead = quantizer.cluster_size < quantizer.dead_code_threshold
        restart(flat)
        restarts.append((dead, flat.clone(), quantizer.codebook.detach()[dead], quantizer.cluster_size[dead],
                         quantizer.embed_sum[dead]))

    quantizer._restart_dead_codes = recorded
    return restarts


def ddp_quantizer_state(rank, dead_code_threshold):
    torch.manual_seed(100 + rank)  # ranks draw different restart candidates; rank 0's win
    x, _ = data()
    model = torch.nn.parallel.DistributedDataParallel(EncoderQuantizer(dead_code_threshold=dead_code_threshold))
    restarts = record_restarts(model.module.quantizer)
    for _ in range(3):
        quantized, _, loss = model(x[shard_of(rank)])
        (quantized.square().mean() + loss).backward()
    return model.module.state(), restarts


def quantizer_worker(rank, store, out, dead_code_threshold):
    with process_group(rank, store):
        torch.save(ddp_quantizer_state(rank, dead_code_threshold), os.path.join(out, f"vq{rank}.pt"))


@pytest.mark.parametrize("dead_code_threshold", [0.0, 0.95])
def test_ddp_quantizer_keeps_ranks_identical(native, tmp_path, dead_code_threshold):
    args = (str(tmp_path / "store"), str(tmp_path), dead_code_threshold)
    mp.spawn(quantizer_worker, args=args, nprocs=WORLD, join=True)
    (states, restarts) = zip(*[torch.load(tmp_path / f"vq{r}.pt") for r in range(WORLD)])
    for a, b in zip(*states):
        assert torch.equal(a, b)
    model, (x, _) = EncoderQuantizer(), data()  # one process, the full batch, no restarts
    for _ in range(3):
        model(x)
    if dead_code_threshold == 0.0:
        assert not any(dead.any() for dead, *_ in restarts[0] + restarts[1])
        for ours, full in zip(states[0], model.state()):
            torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-6)
        return
    # An unused code's usage decays to 0.9 < 0.95 after one step: codes restart. Usage is
    # all-reduced, so the same codes die on every rank, and they restart on rank 0's picks: vectors
    # of rank 0's batch, with their usage reset to 1 and their EMA sum to themselves.
    assert any(dead.any() for dead, *_ in restarts[0])
    for (dead, batch, codes, usage, sums), (dead1, _, codes1, usage1, sums1) in zip(*restarts):
        assert torch.equal(dead, dead1) and torch.equal(codes, codes1)
        assert (codes.unsqueeze(1) == batch.unsqueeze(0)).all(-1).any(-1).all()
        for rank_usage, rank_sums, rank_codes in ((usage, sums, codes), (usage1, sums1, codes1)):
            assert (rank_usage == 1).all() and torch.equal(rank_sums, rank_codes)
    assert not torch.allclose(states[0][0], model.state()[0])


# binary_entropy under DDP: the usage table is all-reduced with an autograd-aware collective, so
# every rank sees the whole batch's codebook entropy and DDP's averaged gradient is the
# full-batch one (a plain all_reduce would leave each rank only its own share of it).
def entropy_model():
    torch.manual_seed(7)
    return torch.nn.Linear(FEATURES, BITS, dtype=torch.float64)


def entropy_step(model, x):
    per_sample, codebook = binary_entropy(model(x) * 3, group_size=4)
    (per_sample - 0.9 * codebook).backward()
    return per_sample.detach(), codebook.detach()


def entropy_worker(rank, store, out):
    with process_group(rank, store):
        x, _ = data()
        model = torch.nn.parallel.DistributedDataParallel(entropy_model())
        values = entropy_step(model, x[shard_of(rank)].double())
        torch.save((values, [p.grad for p in model.parameters()]), os.path.join(out, f"entropy{rank}.pt"))


def test_ddp_binary_entropy_is_the_full_batch_entropy(tmp_path):
    mp.spawn(entropy_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    model, (x, _) = entropy_model(), data()
    per_sample, codebook = entropy_step(model, x.double())
    ranks = [torch.load(tmp_path / f"entropy{r}.pt") for r in range(WORLD)]
    for (rank_per_sample, rank_codebook), grads in ranks:
        torch.testing.assert_close(rank_codebook, codebook, rtol=1e-12, atol=0)
        for grad, full in zip(grads, model.parameters()):
            torch.testing.assert_close(grad, full.grad, rtol=1e-10, atol=1e-13)
    # per_sample is each rank's own mean; equal shards average to the full batch's.
    torch.testing.assert_close(sum(r[0][0] for r in ranks) / WORLD, per_sample, rtol=1e-12, atol=0)
