// vq's route `gemm` (gemm_plan.h VqPlan): after each GEMM tile of scores x.c (tokens x codes), a
// running argmin per token that does not trust the GEMM's rounding at near-ties; after the last
// code tile, the winner's distance recomputed directly in double. One warp per token, 8 tokens
// per block of 256 threads. Every choice between two codes is vq_select.h's rule.
#pragma once

#include "../vq_select.h"
#include "tile_gemm.cuh"

#include <cstdint>
#include <limits>

namespace bitcodes_ext::cuda::gemm {

constexpr int kVqThreads = 256, kWarp = 32, kTokensPerVqBlock = kVqThreads / kWarp;

inline dim3 vq_grid(int64_t tokens) { return dim3(static_cast<unsigned>(ceil_div(tokens, kTokensPerVqBlock))); }

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {  // the same value in every lane (+ is commutative)
  for (int m = kWarp / 2; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

// |x - c|^2 summed in double by the warp, lane l taking the features l, l + 32, ...: the same
// sum in every lane, and for equal codes.
template <typename scalar_t>
__device__ __forceinline__ double warp_squared_distance(const scalar_t* x, const scalar_t* code, int64_t D,
                                                        int lane) {
  double sum = 0;
  for (int64_t d = lane; d < D; d += kWarp) {
    const double diff = static_cast<double>(x[d]) - static_cast<double>(code[d]);
    sum += diff * diff;
  }
  return warp_sum(sum);
}

// The argmin over one tile of codes c0 .. c0 + count, continuing from earlier tiles: per token,
// best[t] is the lowest score |c|^2 - 2 x.c seen so far, exact[t] the lowest squared distance in
// double among the codes checked so far and codes[t] its code.
//
// The GEMM's scores are not the same function of every column: a library GEMM may round a
// column in a tail block differently from one in a full block, so two equal codes (duplicates
// are common: restarts, copies) can score an ulp apart, and the later one would win. So the
// score only filters: every code scoring within `margin` of the lowest score so far has its
// squared distance computed in double (the same sum for equal codes), and vq_better picks among
// those distances (ties: the lowest code). With margin at least twice the scores' rounding
// error, the nearest code always passes the filter: its score is within 2 errors of every other
// code's, so within margin of the lowest so far, whichever tile that is in. Usually one code per
// tile passes.
//
// margin = 4 unit (|x| + max|c|)^2, where unit (the host's) bounds a score's relative error
// (D + 2 roundings of float32 sums, plus TF32's input rounding where cuBLAS may use it) and
// |c|^2 + 2|x||c| <= (|x| + |c|)^2 scales it. Where that is not finite (a NaN or inf in x, or a
// float64 codebook near overflow), vq_better picks by the scores as they stand, so a row with no
// finite score keeps the code 0 it started with.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kVqThreads)
    vq_argmin_kernel(const acc_t* scores, int64_t stride, const acc_t* norms, const acc_t* largest_norm,
                     int64_t c0, int64_t count, int64_t tokens, const scalar_t* x, const scalar_t* codebook,
                     int64_t D, double unit, acc_t* best, double* exact, int64_t* codes) {
  const int lane = threadIdx.x % kWarp;
  const int64_t t = int64_t(blockIdx.x) * kTokensPerVqBlock + threadIdx.x / kWarp;
  const bool valid = t < tokens;  // the same in every lane of the warp
  const acc_t* row = scores + t * stride;
  const scalar_t* token = x + t * D;
  auto score = [&](int64_t c) { return norms[c0 + c] - acc_t(2) * row[c]; };

  // The tile's lowest score, ties to the lowest code: each lane walks its codes in increasing order
  // (vq_better_later_code), then the lanes' winners are merged (vq_better).
  acc_t lowest = std::numeric_limits<acc_t>::infinity();
  long long lowest_code = 0;
  double x_squared = 0;
  if (valid) {
    for (int64_t c = lane; c < count; c += kWarp) {
      const acc_t s = score(c);
      if (vq_better_later_code(s, lowest)) {
        lowest = s;
        lowest_code = c0 + c;
      }
    }
    for (int64_t d = lane; d < D; d += kWarp) x_squared += static_cast<double>(token[d]) * static_cast<double>(token[d]);
  }
  for (int m = kWarp / 2; m >= 1; m /= 2) {  // every lane shuffles, in range or not
    const acc_t other = __shfl_xor_sync(0xffffffffu, lowest, m);
    const long long other_code = __shfl_xor_sync(0xffffffffu, lowest_code, m);
    if (vq_better(other, other_code, lowest, lowest_code)) {
      lowest = other;
      lowest_code = other_code;
    }
  }
  const double reach = sqrt(warp_sum(x_squared)) + sqrt(static_cast<double>(*largest_norm));
  const double margin = 4 * unit * reach * reach;
  const acc_t previous = valid ? best[t] : std::numeric_limits<acc_t>::infinity();
  if (!(margin < std::numeric_limits<double>::infinity())) {  // inf or NaN; warp-uniform
    if (valid && lane == 0 && vq_better(lowest, static_cast<int64_t>(lowest_code), previous, codes[t])) {
      best[t] = lowest;
      codes[t] = lowest_code;
    }
    return;
  }
  const acc_t running = lowest < previous ? lowest : previous;
  const double threshold = static_cast<double>(running) + margin;

  // The codes that pass, lowest first: each lane keeps its next passing code (count: none), the
  // warp takes the lowest of them, computes its distance together, and its lane moves on.
  double nearest = valid ? exact[t] : 0;
  int64_t nearest_code = valid ? codes[t] : 0;
  int64_t mine = lane;
  auto next_passing = [&] {
    while (valid && mine < count && !(static_cast<double>(score(mine)) <= threshold)) mine += kWarp;
    return valid && mine < count ? mine : count;
  };
  int64_t pending = next_passing();
  for (;;) {
    int64_t c = pending;
    for (int m = kWarp / 2; m >= 1; m /= 2) {
      const int64_t other = __shfl_xor_sync(0xffffffffu, c, m);
      c = other < c ? other : c;
    }
    if (c >= count) break;  // warp-uniform
    const double sum = warp_squared_distance(token, codebook + (c0 + c) * D, D, lane);
    if (vq_better(sum, c0 + c, nearest, nearest_code)) {
      nearest = sum;
      nearest_code = c0 + c;
    }
    if (pending == c) {
      mine += kWarp;
      pending = next_passing();
    }
  }
  if (valid && lane == 0) {
    best[t] = running;
    exact[t] = nearest;
    codes[t] = nearest_code;
  }
}

// dist[t] = |x[t] - codebook[codes[t]]| summed in double, for the chunk's tokens.
template <typename scalar_t>
__global__ void __launch_bounds__(kVqThreads)
    vq_distance_kernel(const scalar_t* x, const scalar_t* codebook, const int64_t* codes, int64_t tokens, int64_t D,
                       scalar_t* dist) {
  const int lane = threadIdx.x % kWarp;
  const int64_t t = int64_t(blockIdx.x) * kTokensPerVqBlock + threadIdx.x / kWarp;
  const bool valid = t < tokens;  // the same in every lane of the warp
  // An out-of-range warp sums no features but still takes part in the shuffles.
  const double sum = warp_squared_distance(x + t * D, codebook + (valid ? codes[t] : 0) * D, valid ? D : 0, lane);
  if (valid && lane == 0) dist[t] = static_cast<scalar_t>(sqrt(sum));
}

}  // namespace bitcodes_ext::cuda::gemm
