// The overlapped sum y = sum_i c[2i + bit_i] of one tile of tokens, as one-hot(bits) . C: the
// products are by exact 0s and 1s, so each y is the float32 (or float64) sum of the chosen
// codebook rows, as in the reference's one-hot matmul. Shared by the fused forward (bits from
// a shared-memory mask) and by decode (bits from global memory).
#pragma once

#include "tile_gemm.cuh"

namespace bitcodes_ext::cuda {

// Bits of the block's tokens packed in shared memory: bit i of row r at mask[r * words + i / 32].
struct MaskBit {
  const uint32_t* mask;
  int64_t words;
  __device__ __forceinline__ int operator()(int r, int64_t i) const {
    return (mask[r * words + i / 32] >> (i % 32)) & 1;
  }
};

// Bits of any integer type in global memory, (N, B) row-major; nonzero reads as 1.
template <typename bits_t>
struct GlobalBit {
  const bits_t* bits;
  int64_t N, B, row0;
  __device__ __forceinline__ int operator()(int r, int64_t i) const {
    return row0 + r < N && bits[(row0 + r) * B + i] != 0;
  }
};

// Codebook rows summed into a partial sum before it joins the total: the float32 rounding
// error then grows with 64 + B / 64 terms rather than with B (a whole number of slices).
constexpr int64_t kPartialRows = 128;

// y[row0 .. row0 + 64, :] for the (2B, D) codebook in the accumulation type.
template <typename scalar_t, typename acc_t, typename Bit>
__device__ void overlapped_sum_tile(const Bit& bit, int64_t row0, int64_t N, const acc_t* codebook, int64_t B,
                                    int64_t D, TileStage<acc_t>& stage, scalar_t* y) {
  const int64_t K = 2 * B;
  const auto one_hot = [&](int r, int64_t k) { return k < K && bit(r, k / 2) == int(k % 2) ? acc_t(1) : acc_t(0); };
  for (int64_t d0 = 0; d0 < D; d0 += kTile) {
    Micro<acc_t> acc;
    zero(acc);
    for (int64_t k0 = 0; k0 < K; k0 += kPartialRows) {
      Micro<acc_t> partial;
      zero(partial);
      tile_gemm<true, false>(one_hot, ColumnsAlongI<acc_t, acc_t>{codebook, K, D, d0}, k0, min(K, k0 + kPartialRows),
                             stage, partial);
#pragma unroll
      for (int a = 0; a < kMicro; ++a)
#pragma unroll
        for (int b = 0; b < kMicro; ++b) acc[a][b] += partial[a][b];
    }
    for_each_owned(row0, N, d0, D, [&](int a, int b, int64_t t, int64_t d) {
      y[t * D + d] = static_cast<scalar_t>(acc[a][b]);
    });
  }
}

// decode: one block per tile of 64 tokens.
template <typename scalar_t, typename acc_t, typename bits_t>
__global__ void __launch_bounds__(kThreads)
    decode_kernel(const bits_t* bits, int64_t N, int64_t B, int64_t D, const acc_t* codebook, scalar_t* y) {
  __shared__ TileStage<acc_t> stage;
  const int64_t row0 = int64_t(blockIdx.x) * kTile;
  overlapped_sum_tile(GlobalBit<bits_t>{bits, N, B, row0}, row0, N, codebook, B, D, stage, y);
}

}  // namespace bitcodes_ext::cuda
