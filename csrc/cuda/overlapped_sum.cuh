// The overlapped sum y = sum_i c[2i + bit_i] of one tile of tokens: each y is the float32 (or
// float64) sum of the chosen codebook rows. Shared by the fused forward (bits from a
// shared-memory mask) and by decode (bits from global memory).
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

// acc[r][c] += sum over pairs p in [p_begin, p_end) of c[2p + bit(r, p)][d0 + c], eight pairs
// (16 codebook rows) staged at a time: a select and an add per pair, not two FMAs of a one-hot
// product. Only the chosen row is read, as in the CPU look-up tables.
template <typename acc_t, typename Bit>
__device__ __forceinline__ void select_sum(const Bit& bit, const acc_t* codebook, int64_t B, int64_t D, int64_t d0,
                                           int64_t p_begin, int64_t p_end, TileStage<acc_t>& s, Micro<acc_t>& acc) {
  constexpr int kPairs = kStep / 2;
  const int rl = row_lane(), cl = col_lane();
  const ColumnsAlongI<acc_t, acc_t> rows{codebook, 2 * B, D, d0};  // zero past row 2B
  for (int64_t p0 = p_begin; p0 < p_end; p0 += kPairs) {
    stage<false>(s.b, rows, 2 * p0);
    for (int e = threadIdx.x; e < kTile * kPairs; e += kThreads) {
      const int r = e / kPairs, p = e % kPairs;  // consecutive threads read consecutive bits of a row
      s.a[p][r] = p0 + p < p_end && bit(r, p0 + p) ? acc_t(1) : acc_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      acc_t even[kMicro], odd[kMicro], bits[kMicro];
#pragma unroll
      for (int m = 0; m < kMicro; ++m) {
        even[m] = s.b[2 * p][cl + kLanes * m];
        odd[m] = s.b[2 * p + 1][cl + kLanes * m];
        bits[m] = s.a[p][rl + kLanes * m];
      }
#pragma unroll
      for (int a = 0; a < kMicro; ++a)
#pragma unroll
        for (int b = 0; b < kMicro; ++b) acc[a][b] += bits[a] != acc_t(0) ? odd[b] : even[b];
    }
    __syncthreads();
  }
}

// Pairs summed into a partial sum before it joins the total: the float32 rounding error then
// grows with 64 + B / 64 terms rather than with B (a whole number of 8-pair slices).
constexpr int64_t kPartialPairs = 64;

// y[row0 .. row0 + 64, :] for the (2B, D) codebook in the accumulation type.
template <typename scalar_t, typename acc_t, typename Bit>
__device__ void overlapped_sum_tile(const Bit& bit, int64_t row0, int64_t N, const acc_t* codebook, int64_t B,
                                    int64_t D, TileStage<acc_t>& stage, scalar_t* y) {
  for (int64_t d0 = 0; d0 < D; d0 += kTile) {
    Micro<acc_t> acc;
    zero(acc);
    for (int64_t p0 = 0; p0 < B; p0 += kPartialPairs) {
      Micro<acc_t> partial;
      zero(partial);
      select_sum(bit, codebook, B, D, d0, p0, min(B, p0 + kPartialPairs), stage, partial);
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
