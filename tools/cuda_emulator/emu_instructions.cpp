// Test-only ops that drive the emulated warp instructions (the wrappers of csrc/cuda/mma.cuh)
// directly, for tests/test_cuda_emulator.py: per-lane register fragments in and out, a small
// GEMM built from cp.async + ldmatrix + mma, cp.async group semantics, warps running ahead of
// each other, and misuses that must fail loudly.
#include "emu_cuda.h"
#include "cuda/mma.cuh"

#include <torch/library.h>

#include <string>

namespace {

using bitcodes_ext::cuda::cp_async_ca16;
using bitcodes_ext::cuda::cp_async_cg16;
using bitcodes_ext::cuda::cp_async_commit;
using bitcodes_ext::cuda::cp_async_wait;

void launch(unsigned threads, const std::function<void()>& body) {
  emu::Launcher(dim3(1), dim3(threads), 0, nullptr).run([&] { body(); });
}

// d (32, 4) = the D fragments of one mma with lane l's registers a[l] (4 words), b[l] (2), c[l] (4 floats).
at::Tensor warp_mma(const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& c_in, bool bf16) {
  const auto a = a_in.to(at::kInt).contiguous(), b = b_in.to(at::kInt).contiguous(), c = c_in.to(at::kFloat).contiguous();
  TORCH_CHECK(a.sizes() == at::IntArrayRef({32, 4}) && b.sizes() == at::IntArrayRef({32, 2}) && c.sizes() == at::IntArrayRef({32, 4}));
  auto d = at::empty({32, 4}, at::kFloat);
  const auto* ap = reinterpret_cast<const uint32_t*>(a.const_data_ptr<int>());
  const auto* bp = reinterpret_cast<const uint32_t*>(b.const_data_ptr<int>());
  const float* cp = c.const_data_ptr<float>();
  float* dp = d.mutable_data_ptr<float>();
  launch(32, [&] {
    const int l = threadIdx.x;
    const uint32_t ra[4] = {ap[4 * l], ap[4 * l + 1], ap[4 * l + 2], ap[4 * l + 3]}, rb[2] = {bp[2 * l], bp[2 * l + 1]};
    float rd[4] = {cp[4 * l], cp[4 * l + 1], cp[4 * l + 2], cp[4 * l + 3]};
    if (bf16) {
      bitcodes_ext::cuda::mma_m16n8k16<c10::BFloat16>(rd, ra, rb);
    } else {
      bitcodes_ext::cuda::mma_m16n8k16<c10::Half>(rd, ra, rb);
    }
    for (int i = 0; i < 4; ++i) dp[4 * l + i] = rd[i];
  });
  return d;
}

// regs (32, num): ldmatrix of `num` 8x8 matrices from `tile` (rows, cols) int16 in shared memory,
// lane l addressing element (row[l], col[l]).
at::Tensor warp_ldmatrix(const at::Tensor& tile_in, const at::Tensor& row_in, const at::Tensor& col_in, int64_t num,
                         bool trans) {
  const auto tile = tile_in.to(at::kShort).contiguous();
  const auto row = row_in.to(at::kLong).contiguous(), col = col_in.to(at::kLong).contiguous();
  TORCH_CHECK(tile.dim() == 2 && tile.numel() <= 4096 && row.numel() == 32 && col.numel() == 32);
  alignas(16) static uint16_t smem[4096];
  std::memcpy(smem, tile.const_data_ptr<int16_t>(), tile.numel() * 2);
  const int64_t cols = tile.size(1);
  auto out = at::zeros({32, num}, at::kInt);
  auto* op = reinterpret_cast<uint32_t*>(out.mutable_data_ptr<int>());
  const int64_t* rp = row.const_data_ptr<int64_t>();
  const int64_t* cp = col.const_data_ptr<int64_t>();
  launch(32, [&] {
    const int l = threadIdx.x;
    const uint16_t* p = smem + rp[l] * cols + cp[l];
    uint32_t r4[4] = {}, r2[2] = {}, r1[1] = {};
    if (num == 4 && !trans) bitcodes_ext::cuda::ldmatrix_x4(r4, p);
    if (num == 4 && trans) bitcodes_ext::cuda::ldmatrix_x4_trans(r4, p);
    if (num == 2 && !trans) bitcodes_ext::cuda::ldmatrix_x2(r2, p);
    if (num == 2 && trans) bitcodes_ext::cuda::ldmatrix_x2_trans(r2, p);
    if (num == 1 && !trans) bitcodes_ext::cuda::ldmatrix_x1(r1, p);
    if (num == 1 && trans) bitcodes_ext::cuda::ldmatrix_x1_trans(r1, p);
    for (int m = 0; m < num; ++m) op[num * l + m] = num == 4 ? r4[m] : num == 2 ? r2[m] : r1[m];
  });
  return out;
}

// out (M, N) float = a (M, K) . b, M = 32, K = 32, N = 16, bf16 or fp16: two warps (one m16 tile
// each) stage a and b with cp.async, load fragments with ldmatrix and multiply with mma. b is
// (N, K) when b_is_nk (ldmatrix .x2 of its rows), else (K, N) (ldmatrix .x2.trans).
at::Tensor block_gemm(const at::Tensor& a_in, const at::Tensor& b_in, bool b_is_nk) {
  const auto a = a_in.contiguous(), b = b_in.contiguous();
  constexpr int M = 32, K = 32, N = 16;
  TORCH_CHECK(a.sizes() == at::IntArrayRef({M, K}) && b.scalar_type() == a.scalar_type());
  TORCH_CHECK(b.sizes() == (b_is_nk ? at::IntArrayRef({N, K}) : at::IntArrayRef({K, N})));
  TORCH_CHECK(a.scalar_type() == at::kBFloat16 || a.scalar_type() == at::kHalf);
  alignas(16) static uint16_t sa[M * K], sb[N * K];
  auto out = at::zeros({M, N}, at::kFloat);
  float* op = out.mutable_data_ptr<float>();
  const auto* ga = static_cast<const uint16_t*>(a.const_data_ptr());
  const auto* gb = static_cast<const uint16_t*>(b.const_data_ptr());
  const bool bf16 = a.scalar_type() == at::kBFloat16;
  launch(64, [&] {
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    for (int e = tid; e < M * K / 8; e += 64) cp_async_cg16(sa + 8 * e, ga + 8 * e, true);
    cp_async_commit();
    for (int e = tid; e < N * K / 8; e += 64) cp_async_ca16(sb + 8 * e, gb + 8 * e, true);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    float acc[N / 8][4] = {};
    for (int k0 = 0; k0 < K; k0 += 16) {
      uint32_t fa[4];
      bitcodes_ext::cuda::ldmatrix_x4(fa, sa + (16 * warp + lane % 16) * K + k0 + 8 * (lane / 16));
      for (int n = 0; n < N / 8; ++n) {
        uint32_t fb[2];
        if (b_is_nk) {  // rows n of b are columns of B: lanes 0-7 at k0, lanes 8-15 at k0 + 8
          bitcodes_ext::cuda::ldmatrix_x2(fb, sb + (8 * n + lane % 8) * K + k0 + 8 * ((lane / 8) % 2));
        } else {  // rows k of b, transposed: lanes 0-7 rows k0.., lanes 8-15 rows k0 + 8..
          bitcodes_ext::cuda::ldmatrix_x2_trans(fb, sb + (k0 + lane % 8 + 8 * ((lane / 8) % 2)) * N + 8 * n);
        }
        if (bf16) {
          bitcodes_ext::cuda::mma_m16n8k16<c10::BFloat16>(acc[n], fa, fb);
        } else {
          bitcodes_ext::cuda::mma_m16n8k16<c10::Half>(acc[n], fa, fb);
        }
      }
    }
    for (int n = 0; n < N / 8; ++n)
      for (int i = 0; i < 4; ++i) {
        const emu::Coord c = emu::c_coord(lane, i);
        op[(16 * warp + c.row) * N + 8 * n + c.col] = acc[n][i];
      }
  });
  return out;
}

// cp.async groups, per thread of a 64-thread block: three 16-byte copies of src (64, 3, 8) int16
// in three groups, the second zero-filled (src-size 0). Returns, per thread, the first element of
// its destinations: [chunk 0 before any wait, chunk 0 and chunk 1 after wait_group 2, chunk 1
// after wait_group 1, chunk 2 after wait_group 0].
at::Tensor cp_async_groups(const at::Tensor& src_in) {
  const auto src = src_in.to(at::kShort).contiguous();
  TORCH_CHECK(src.sizes() == at::IntArrayRef({64, 3, 8}));
  alignas(16) static uint16_t dst[64][3][8];
  auto out = at::zeros({64, 5}, at::kInt);
  int* op = out.mutable_data_ptr<int>();
  const auto* gp = static_cast<const uint16_t*>(src.const_data_ptr());
  launch(64, [&] {
    const int t = threadIdx.x;
    for (int g = 0; g < 3; ++g) {
      cp_async_cg16(dst[t][g], gp + (t * 3 + g) * 8, g != 1);
      cp_async_commit();
    }
    op[5 * t + 0] = dst[t][0][0];
    cp_async_wait<2>();
    op[5 * t + 1] = dst[t][0][0];
    op[5 * t + 2] = dst[t][1][0];
    cp_async_wait<1>();
    op[5 * t + 3] = dst[t][1][0];
    cp_async_wait<0>();
    op[5 * t + 4] = dst[t][2][0];
  });
  return out;
}

// What warp 1 reads from a shared word that warp 0 writes, with no barrier in between: depends
// on which warp the scheduler runs first (the race a missing __syncthreads leaves).
int64_t unsynchronised_read() {
  static int word;
  int seen = -1;
  launch(64, [&] {
    if (threadIdx.x == 0) word = 0;
    __syncthreads();
    if (threadIdx.x == 0) word = 1;                   // warp 0
    if (threadIdx.x == 32) seen = word;               // warp 1
    __syncthreads();
  });
  return seen;
}

// Misuses the emulator must refuse (each aborts the process with "EMU FAILURE: ...").
void misuse(const std::string& what) {
  alignas(16) static uint16_t smem[1024];
  uint32_t a[4] = {}, b[2] = {};
  if (what == "mma_partial_warp") {
    launch(48, [&] {
      float d[4] = {};
      bitcodes_ext::cuda::mma_m16n8k16<c10::BFloat16>(d, a, b);
    });
  } else if (what == "mma_divergent") {
    launch(32, [&] {
      float d[4] = {};
      if (threadIdx.x < 16) bitcodes_ext::cuda::mma_m16n8k16<c10::BFloat16>(d, a, b);
      __syncthreads();
    });
  } else if (what == "ldmatrix_misaligned") {
    launch(32, [&] {
      uint32_t r[4];
      bitcodes_ext::cuda::ldmatrix_x4(r, smem + 8 * threadIdx.x + (threadIdx.x == 5 ? 1 : 0));
    });
  } else if (what == "cp_async_misaligned") {
    launch(32, [&] {
      cp_async_cg16(smem + 8 * threadIdx.x + 4, smem + 512, true);
      cp_async_commit();
      cp_async_wait<0>();
    });
  } else if (what == "cp_async_never_waited") {
    launch(32, [&] {
      cp_async_cg16(smem + 8 * threadIdx.x, smem + 512 + 8 * threadIdx.x, true);
      cp_async_commit();
    });
  } else if (what == "shfl_partial_mask") {
    launch(32, [&] { (void)__shfl_xor_sync(0xffffu, 1.f, 1); });
  } else {
    TORCH_CHECK(false, "unknown misuse ", what);
  }
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(bitcodes_emu, m) {
  m.def("warp_mma", &warp_mma);
  m.def("warp_ldmatrix", &warp_ldmatrix);
  m.def("block_gemm", &block_gemm);
  m.def("cp_async_groups", &cp_async_groups);
  m.def("unsynchronised_read", &unsynchronised_read);
  m.def("misuse", &misuse);
}
