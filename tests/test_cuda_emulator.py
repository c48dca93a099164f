"""The CUDA emulator's tensor-core and async-copy instructions against the PTX ISA.

The register fragments below are written from the formulas of the PTX ISA ("Matrix Fragments
for mma.m16n8k16 with floating point type"; ldmatrix's "Each thread in a warp loads fragments
of a row ..."; cp.async's groups), independently of tools/cuda_emulator/emu_cuda.h, and the
emulated instructions (bitcodes_emu::warp_mma, ...) must agree with them element by element.
These tests exist only where the emulator is loaded (`make emulate-cuda`); elsewhere they skip.
"""

import os
import subprocess
import sys

import pytest
import torch

from conftest import CUDA_EMULATOR
from oracle import LOW_PRECISION

pytestmark = pytest.mark.skipif(not CUDA_EMULATOR, reason="tests of the CUDA emulator itself (make emulate-cuda)")
emu = torch.ops.bitcodes_emu if CUDA_EMULATOR else None


# ---- the documented fragments: (row, col) of element i of lane `lane`; register i // 2, low half first
def a_element(lane, i):
    group, thread_in_group = lane >> 2, lane % 4
    row = group if (i < 2 or 4 <= i < 6) else group + 8
    col = thread_in_group * 2 + (i & 1) + (8 if i >= 4 else 0)
    return row, col


def b_element(lane, i):
    group, thread_in_group = lane >> 2, lane % 4
    return thread_in_group * 2 + (i & 1) + (8 if i >= 2 else 0), group


def c_element(lane, i):
    group, thread_in_group = lane >> 2, lane % 4
    return (group if i < 2 else group + 8), thread_in_group * 2 + (i & 1)


def bits16(values, dtype):
    """The raw 16-bit patterns of `values` in `dtype`, as Python ints."""
    return [int(v) & 0xFFFF for v in torch.tensor(values, dtype=dtype).view(torch.int16).tolist()]


def pack(matrix, element, registers, dtype):
    """Per-lane registers (32, registers) int32 holding `matrix` as the fragment `element` places it."""
    out = torch.zeros(32, registers, dtype=torch.int64)
    for lane in range(32):
        for i in range(2 * registers):
            row, col = element(lane, i)
            (b,) = bits16([matrix[row, col].item()], dtype)
            out[lane, i // 2] |= b << (16 * (i % 2))
    return out.to(torch.int32)  # wraps to the same 32 bits


def test_fragment_tables_cover_each_element_once():
    for element, shape, count in ((a_element, (16, 16), 8), (b_element, (16, 8), 4), (c_element, (16, 8), 4)):
        seen = torch.zeros(shape, dtype=torch.int64)
        for lane in range(32):
            for i in range(count):
                seen[element(lane, i)] += 1
        assert seen.eq(1).all()


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_mma_fragments_follow_the_ptx_layout(dtype):
    # Small integers: every product and sum is exact, so D must equal A @ B + C exactly, and any
    # element the emulator takes from the wrong lane or register shows.
    g = torch.Generator().manual_seed(0)
    A = torch.randint(-8, 9, (16, 16), generator=g).double()
    B = torch.randint(-8, 9, (16, 8), generator=g).double()
    C = torch.randint(-100, 101, (16, 8), generator=g).double()
    c_regs = torch.zeros(32, 4)
    for lane in range(32):
        for i in range(4):
            c_regs[lane, i] = C[c_element(lane, i)]
    d = emu.warp_mma(pack(A, a_element, 4, dtype), pack(B, b_element, 2, dtype), c_regs, dtype == torch.bfloat16)
    expected = A @ B + C
    for lane in range(32):
        for i in range(4):
            assert d[lane, i].item() == expected[c_element(lane, i)].item(), (lane, i)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_mma_products_are_exact_and_the_sum_rounds_once(dtype):
    # (1 + 2^-7)^2 = 1 + 2^-6 + 2^-14 needs 15 bits: exact in float. And the emulator's documented
    # order: C + the 16 products in double, one rounding to float (2^24 + 1 - 1 = 2^24, where
    # float steps would give 2^24 - 1). The hardware's order is undocumented; kernel tests allow
    # float32-level accumulation error for that reason.
    A = torch.zeros(16, 16, dtype=torch.float64)
    B = torch.zeros(16, 8, dtype=torch.float64)
    C = torch.zeros(16, 8)
    A[0, 0], B[0, 0] = 1 + 2**-7, 1 + 2**-7  # D[0, 0]: lane 0, element 0
    A[8, 0], B[0, 1], A[8, 1], B[1, 1] = 1.0, 1.0, 1.0, -1.0  # D[8, 1]: lane 0, element 3
    C[8, 1] = 2.0**24
    c_regs = torch.zeros(32, 4)
    for lane in range(32):
        for i in range(4):
            c_regs[lane, i] = C[c_element(lane, i)]
    d = emu.warp_mma(pack(A, a_element, 4, dtype), pack(B, b_element, 2, dtype), c_regs, dtype == torch.bfloat16)
    assert c_element(0, 0) == (0, 0) and c_element(0, 3) == (8, 1)
    assert d[0, 0].item() == 1 + 2**-6 + 2**-14
    assert d[0, 3].item() == 2.0**24


@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("num", [1, 2, 4])
def test_ldmatrix_fragments_follow_the_ptx_layout(num, trans):
    # tile[r, c] = 64 r + c; matrix m's rows start at (8m + 3, 8 (m + 1)), addressed by lanes
    # 8m .. 8m + 7; the other lanes point at junk rows that must be ignored.
    tile = torch.arange(64 * 64, dtype=torch.int64).reshape(64, 64)
    rows, cols = torch.zeros(32, dtype=torch.int64), torch.zeros(32, dtype=torch.int64)
    for lane in range(32):
        m, j = lane // 8, lane % 8
        rows[lane], cols[lane] = (8 * m + 3 + j, 8 * (m + 1)) if m < num else (60, 56)
    regs = emu.warp_ldmatrix(tile.to(torch.int16), rows, cols, num, trans).to(torch.int64) & 0xFFFFFFFF
    for lane in range(32):
        for m in range(num):
            r0, c0 = 8 * m + 3, 8 * (m + 1)
            if trans:  # lane holds column lane / 4, rows 2 (lane % 4) and 2 (lane % 4) + 1
                lo = tile[r0 + 2 * (lane % 4), c0 + lane // 4]
                hi = tile[r0 + 2 * (lane % 4) + 1, c0 + lane // 4]
            else:  # lane holds row lane / 4, columns 2 (lane % 4) and 2 (lane % 4) + 1
                lo = tile[r0 + lane // 4, c0 + 2 * (lane % 4)]
                hi = tile[r0 + lane // 4, c0 + 2 * (lane % 4) + 1]
            assert regs[lane, m].item() == (int(lo) | int(hi) << 16), (lane, m)


@pytest.mark.parametrize("b_is_nk", [True, False])
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_gemm_from_emulated_instructions_equals_torch(dtype, b_is_nk):
    # cp.async -> ldmatrix (.x4 for A, .x2 or .x2.trans for B) -> mma -> the D layout.
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-6, 7, (32, 32), generator=g).to(dtype)
    b = torch.randint(-6, 7, (32, 16), generator=g).to(dtype)  # (K, N)
    out = emu.block_gemm(a, b.T.contiguous() if b_is_nk else b, b_is_nk)
    assert torch.equal(out, a.float() @ b.float())  # integers: exact
    a, b = torch.randn(32, 32, generator=g).to(dtype), torch.randn(32, 16, generator=g).to(dtype)
    out = emu.block_gemm(a, b.T.contiguous() if b_is_nk else b, b_is_nk)
    expected = a.double() @ b.double()
    bound = 2 * 32 * 2.0**-24 * (a.double().abs() @ b.double().abs())  # float accumulation of exact products
    assert ((out.double() - expected).abs() <= bound).all()


def test_cp_async_lands_at_its_wait_group():
    src = torch.arange(64 * 3 * 8, dtype=torch.int64).add(1).reshape(64, 3, 8).to(torch.int16)
    seen = emu.cp_async_groups(src)
    first = src[:, :, 0].to(torch.int32)
    poison = 0xFFFF  # the emulator's "not yet written" (NaN in bf16, fp16 and float)
    assert seen[:, 0].eq(poison).all()  # issued, not waited for: undefined, poisoned
    assert torch.equal(seen[:, 1], first[:, 0])  # wait_group 2 retires the oldest of three groups
    assert seen[:, 2].eq(poison).all()  # the second group is still in flight
    assert seen[:, 3].eq(0).all()  # src-size 0: zero-filled
    assert torch.equal(seen[:, 4], first[:, 2])


def test_warps_run_ahead_of_each_other_between_barriers():
    # A read of another warp's write without __syncthreads gives either value, by scheduling order.
    try:
        emu.set_order(0)
        forward = emu.unsynchronised_read()
        emu.set_order(1)
        backward = emu.unsynchronised_read()
    finally:
        emu.set_order(2)
    assert (forward, backward) == (1, 0)


@pytest.mark.parametrize(
    "misuse, message",
    [
        ("mma_partial_warp", "partial warp"),
        ("mma_divergent", "lanes of a warp diverged"),
        ("ldmatrix_misaligned", "not 16-byte aligned"),
        ("cp_async_misaligned", "not 16-byte aligned"),
        ("cp_async_never_waited", "never waited for"),
        ("shfl_partial_mask", "partial-mask"),
    ],
)
def test_misuse_fails_loudly(misuse, message):
    code = f"import torch; torch.ops.load_library({CUDA_EMULATOR!r}); torch.ops.bitcodes_emu.misuse({misuse!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "BITCODES_CUDA_EMULATOR": ""})
    assert result.returncode != 0 and f"EMU FAILURE" in result.stderr and message in result.stderr, result.stderr[-2000:]
