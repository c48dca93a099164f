"""route.h's rule and the cost model of every route (csrc/cuda/cost_model.h), read through bitcodes_ext.info: plain
C++ in every build, so these run without a GPU."""

import itertools

import pytest
import torch

from bitcodes_ext import info
from oracle import DTYPES

# The #3 grid of issue 11: T = 2^20, D in {256, 512, 1024}, B in {16, 64}.
GRID = [(1 << 20, bits, features) for features in (256, 512, 1024) for bits in (16, 64)]
# The Bitcodes ops; vq has its own problems here.
OPS = tuple(op for op in info.OPS if op != "vq")


@pytest.fixture
def model(native, monkeypatch):
    monkeypatch.delenv("BITCODES_CUDA_ROUTE", raising=False)
    monkeypatch.delenv("BITCODES_CUDA_CHUNK_TOKENS", raising=False)
    return info


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_rule_takes_the_lowest_prediction(model, dtype):
    problems = [(op, t, b, d, training) for op in OPS for (t, b, d) in GRID + [(1000, 5, 33)] for training in (False, True)]
    problems += [("vq", t, k, d, False) for t, k, d in ((1 << 20, 1 << 17, 64), (5000, 700, 32), (1, 1, 1))]
    for op, tokens, width, features, training in problems:
        predicted = {
            route: model.predicted_cuda_ms(route, op, dtype, tokens, width, features, training=training)
            for route in model.cuda_routes()
        }
        assert all(ms > 0 for ms in predicted.values())
        # route.h's trusted_for_auto: mma not until a GPU has run it; cores not for bf16/fp16,
        # where the reference is on the tensor cores and gemm is the baseline
        untrusted = {"mma"} | ({"cores"} if dtype in (torch.bfloat16, torch.float16) else set())
        trusted = {route: ms for route, ms in predicted.items() if route not in untrusted}
        assert model.cuda_route(op, dtype, tokens, width, features, training=training) == min(trusted, key=trusted.get)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_takes_route_gemm_everywhere(model, dtype):
    # Whatever the model predicts for the CUDA cores (at B = 16 it predicts them ahead), auto
    # keeps bf16/fp16 on cuBLAS's tensor cores until a GPU has timed the alternatives.
    problems = [(op, t, b, d, tr) for (t, b, d) in GRID + [(1000, 5, 33)] for op in OPS for tr in (False, True)]
    for op, tokens, bits, features, training in problems:
        assert model.cuda_route(op, dtype, tokens, bits, features, training=training) == "gemm"
    assert model.cuda_route("vq", dtype, 1 << 20, 1 << 10, 64) == "gemm"


def test_the_grid_at_b64_is_faster_on_tensor_cores(model):
    # The model's reason for route gemm: at B = 64 the CUDA cores are issue-bound.
    for (tokens, bits, features), op, training in itertools.product(GRID, OPS, (False, True)):
        if bits != 64:
            continue
        gemm = model.predicted_cuda_ms("gemm", op, torch.bfloat16, tokens, bits, features, training=training)
        cores = model.predicted_cuda_ms("cores", op, torch.bfloat16, tokens, bits, features, training=training)
        assert gemm < cores, (op, tokens, bits, features, training)


def test_narrow_bits_move_fewer_bytes(model):
    for route in model.cuda_routes():
        wide = model.predicted_cuda_ms(route, "forward", torch.bfloat16, 1 << 20, 64, 256)
        narrow = model.predicted_cuda_ms(route, "forward", torch.bfloat16, 1 << 20, 64, 256, bits_dtype=torch.bool)
        if route == "gemm":
            assert narrow < wide  # route gemm writes 1 byte per bit instead of 8
        else:
            assert narrow > wide  # the CUDA cores write int64, then convert


def test_time_grows_with_the_problem(model):
    for route, op in itertools.product(model.cuda_routes(), info.OPS):
        small = model.predicted_cuda_ms(route, op, torch.bfloat16, 1 << 16, 64, 256)
        assert small < model.predicted_cuda_ms(route, op, torch.bfloat16, 1 << 20, 64, 256)
        assert small < model.predicted_cuda_ms(route, op, torch.bfloat16, 1 << 16, 64, 1024)


def test_a_forced_route_wins_and_a_bad_one_is_an_error(model, monkeypatch):
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "cores")
    assert model.cuda_route("forward", torch.bfloat16, 1 << 20, 64, 1024) == "cores"
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "gemm")
    assert model.cuda_route("vq", torch.float64, 10, 3, 2) == "gemm"
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "mma")
    assert model.cuda_route("forward", torch.bfloat16, 1 << 20, 64, 1024) == "mma"
    assert model.cuda_route("backward", torch.bfloat16, 1 << 20, 64, 1024) == "gemm"  # no mma backward: the rule
    monkeypatch.setenv("BITCODES_CUDA_ROUTE", "fastest")
    with pytest.raises(ValueError, match="BITCODES_CUDA_ROUTE must be auto or the name of a route"):
        model.cuda_route("forward", torch.float32, 10, 3, 2)


def test_bad_arguments_are_clear_errors(model):
    with pytest.raises(ValueError, match="op must be one of"):
        model.cuda_route("encode", torch.float32, 10, 3, 2)
    with pytest.raises(TypeError, match="dtype must be one of"):
        model.cuda_route("forward", torch.int32, 10, 3, 2)
    with pytest.raises(ValueError, match="route must be one of"):
        model.predicted_cuda_ms("tensor", "forward", torch.float32, 10, 3, 2)
