// vq's route 1 (gemm_plan.h VqPlan): after each GEMM tile of scores x.c (tokens x codes), a
// running argmin per token; after the last code tile, the winner's distance recomputed
// directly in double. One warp per token, 8 tokens per block of 256 threads.
#pragma once

#include "tile_gemm.cuh"

#include <cstdint>
#include <limits>

namespace bitcodes_ext::cuda::gemm {

constexpr int kVqThreads = 256, kWarp = 32, kTokensPerVqBlock = kVqThreads / kWarp;

inline dim3 vq_grid(int64_t tokens) { return dim3(static_cast<unsigned>(ceil_div(tokens, kTokensPerVqBlock))); }

// best[t], codes[t] (the chunk's tokens) become the lowest score |c|^2 - 2 x.c over this tile's
// codes c0 .. c0 + count and what they held from earlier tiles. Ties go to the lowest code:
// each lane walks its codes in increasing order with a strict <, the lanes' winners are merged
// by (score, code), and an earlier (lower-coded) tile keeps a tie. A NaN score never wins, so a
// row with no finite score keeps the code 0 it started with (best starts at +inf).
template <typename acc_t>
__global__ void __launch_bounds__(kVqThreads)
    vq_argmin_kernel(const acc_t* scores, int64_t stride, const acc_t* norms, int64_t c0, int64_t count,
                     int64_t tokens, acc_t* best, int64_t* codes) {
  const int lane = threadIdx.x % kWarp;
  const int64_t t = int64_t(blockIdx.x) * kTokensPerVqBlock + threadIdx.x / kWarp;
  acc_t lowest = std::numeric_limits<acc_t>::infinity();
  long long code = 0;
  if (t < tokens) {
    for (int64_t c = lane; c < count; c += kWarp) {
      const acc_t score = norms[c0 + c] - acc_t(2) * scores[t * stride + c];
      if (score < lowest) {
        lowest = score;
        code = c0 + c;
      }
    }
  }
  for (int m = kWarp / 2; m >= 1; m /= 2) {  // every thread shuffles, in range or not
    const acc_t other = __shfl_xor_sync(0xffffffffu, lowest, m);
    const long long other_code = __shfl_xor_sync(0xffffffffu, code, m);
    if (other < lowest || (other == lowest && other_code < code)) {
      lowest = other;
      code = other_code;
    }
  }
  if (t < tokens && lane == 0 && lowest < best[t]) {
    best[t] = lowest;
    codes[t] = code;
  }
}

// dist[t] = |x[t] - codebook[codes[t]]| summed in double, for the chunk's tokens.
template <typename scalar_t>
__global__ void __launch_bounds__(kVqThreads)
    vq_distance_kernel(const scalar_t* x, const scalar_t* codebook, const int64_t* codes, int64_t tokens, int64_t D,
                       scalar_t* dist) {
  const int lane = threadIdx.x % kWarp;
  const int64_t t = int64_t(blockIdx.x) * kTokensPerVqBlock + threadIdx.x / kWarp;
  double sum = 0;
  if (t < tokens) {
    const scalar_t* row = x + t * D;
    const scalar_t* code = codebook + codes[t] * D;
    for (int64_t d = lane; d < D; d += kWarp) {
      const double diff = static_cast<double>(row[d]) - static_cast<double>(code[d]);
      sum += diff * diff;
    }
  }
  for (int m = kWarp / 2; m >= 1; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
  if (t < tokens && lane == 0) dist[t] = static_cast<scalar_t>(sqrt(sum));
}

}  // namespace bitcodes_ext::cuda::gemm
