"""DistributedDataParallel with gloo, 2 CPU processes, for the compression quantizers:
ResidualVectorQuantizer's per-stage EMA statistics and dead-code restarts keep every rank
identical (and equal to one process on the full batch), and the k-means initialisation from
the first batch (VectorQuantizer and ResidualVectorQuantizer) gives every rank the k-means of
all ranks' batches together."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from bitcodes_ext import ResidualVectorQuantizer, VectorQuantizer
from test_distributed import WORLD, process_group

FEATURES, CODES, STAGES = 6, 8, 3
SPLIT = 70  # rank 0 gets rows [0, 70), rank 1 the other 58: batches of different sizes


def data():
    generator = torch.Generator().manual_seed(21)
    return torch.randn(128, FEATURES, generator=generator)


def shard_of(rank):
    return slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)


class EncoderThen(torch.nn.Module):
    """A trainable encoder in front of the quantizer, as users wrap them in DDP."""

    def __init__(self, quantizer):
        super().__init__()
        torch.manual_seed(3)
        self.encoder = torch.nn.Linear(FEATURES, FEATURES)
        self.quantizer = quantizer

    def forward(self, x):
        return self.quantizer(self.encoder(x))


def rvq_model(dead_code_threshold, shared=False):
    torch.manual_seed(4)
    rvq = ResidualVectorQuantizer(
        STAGES, CODES, FEATURES, ema=True, decay=0.9, dead_code_threshold=dead_code_threshold, shared_codebook=shared
    )
    return EncoderThen(rvq)


def rvq_state(model):
    return [t.detach().clone() for q in model.quantizer.quantizers for t in (q.codebook, q.cluster_size, q.embed_sum)]


def train_steps(model, x, steps=3):
    for _ in range(steps):
        quantized, _, loss = model(x)
        (quantized.square().mean() + loss).backward()


def rvq_worker(rank, store, out, dead_code_threshold, shared):
    with process_group(rank, store):
        torch.manual_seed(100 + rank)  # ranks draw different restart candidates; rank 0's win
        model = torch.nn.parallel.DistributedDataParallel(rvq_model(dead_code_threshold, shared))
        train_steps(model, data()[shard_of(rank)])
        torch.save(rvq_state(model.module), os.path.join(out, f"rvq{rank}.pt"))


@pytest.mark.parametrize("dead_code_threshold,shared", [(0.0, False), (0.0, True), (0.95, False)])
def test_ddp_residual_quantizer_keeps_ranks_identical(native, tmp_path, dead_code_threshold, shared):
    args = (str(tmp_path / "store"), str(tmp_path), dead_code_threshold, shared)
    mp.spawn(rvq_worker, args=args, nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rvq{r}.pt") for r in range(WORLD)]
    for a, b in zip(*ranks):
        assert torch.equal(a, b)
    model = rvq_model(0.0, shared)  # one process, the full batch, no restarts
    train_steps(model, data())
    if dead_code_threshold == 0.0:
        for ours, full in zip(ranks[0], rvq_state(model)):
            torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-5)
    else:  # an unused code's usage decays to 0.9 < 0.95 after one step: some codes restarted
        assert any(not torch.allclose(a, b) for a, b in zip(ranks[0], rvq_state(model)))


def init_models():
    """The first-batch k-means initialisation of each kind of quantizer."""
    torch.manual_seed(6)
    return [
        EncoderThen(VectorQuantizer(CODES, FEATURES, kmeans_init=True)),
        EncoderThen(ResidualVectorQuantizer(STAGES, CODES, FEATURES, kmeans_init=True, ema=True)),
        EncoderThen(ResidualVectorQuantizer(STAGES, CODES, FEATURES, kmeans_init=True, shared_codebook=True)),
    ]


def init_state(model):
    q = model.quantizer
    quantizers = q.quantizers if isinstance(q, ResidualVectorQuantizer) else [q]
    return [t.detach().clone() for v in quantizers for t in (v.codebook, v.cluster_size, v.embed_sum, v.initialized)]


def seeded_models():
    """init_kmeans called by hand, each rank with its own k-means seed: rank 0's result wins."""
    torch.manual_seed(7)
    return [EncoderThen(VectorQuantizer(CODES, FEATURES)), EncoderThen(ResidualVectorQuantizer(STAGES, CODES, FEATURES))]


def init_worker(rank, store, out):
    with process_group(rank, store):
        states = []
        for model in init_models():
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            quantized, _, loss = ddp(data()[shard_of(rank)])  # initialises, then quantizes
            (quantized.square().mean() + loss).backward()
            states.append(init_state(model))
        for model in seeded_models():
            model.quantizer.init_kmeans(data()[shard_of(rank)], seed=rank)
            states.append(init_state(model))
        torch.save(states, os.path.join(out, f"init{rank}.pt"))


def test_ddp_kmeans_init_from_the_first_batch(native, tmp_path):
    mp.spawn(init_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"init{r}.pt") for r in range(WORLD)]
    full = []
    for model in init_models():  # one process initialising on the whole batch
        model(data())
        full.append(init_state(model))
    for model in seeded_models():
        model.quantizer.init_kmeans(data(), seed=0)
        full.append(init_state(model))
    assert len(full) == len(ranks[0]) == 5
    for kind, (rank0, rank1, one) in enumerate(zip(ranks[0], ranks[1], full)):
        assert bool(rank0[3]), f"model {kind} was not initialised"
        for a, b in zip(rank0, rank1):
            assert torch.equal(a, b), f"model {kind}: ranks differ"
        for a, b in zip(rank0, one):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
