// The epilogues of route gemm (gemm_plan.h): our kernels between ATen's GEMMs, one pass each over
// a chunk's workspace. All are elementwise or per token, so no floating-point atomics:
//   threshold_kernel        logits (+ bias, + noise) -> z, bits in the requested dtype, one-hot H
//   one_hot_kernel          decode's bits -> H
//   r_max_kernel            fp16 only: each block's max |r|, for the power-of-two scale of r
//   straight_through_kernel U, z -> E: the bits, r split into hi + lo parts (and their copies)
//   scale_out_kernel        fp16 only: dx from the float32 GEMM, scaled back, in fp16
#pragma once

#include "noise.cuh"
#include "tile_gemm.cuh"

#include <ATen/cuda/PhiloxCudaState.h>

#include <cfloat>
#include <cstdint>

namespace bitcodes_ext::cuda::gemm {

constexpr int kEpilogueThreads = 256;

inline dim3 elementwise_grid(int64_t count) {
  return dim3(static_cast<unsigned>(ceil_div(count, kEpilogueThreads)));
}

__device__ __forceinline__ int64_t global_thread() {
  return int64_t(blockIdx.x) * kEpilogueThreads + threadIdx.x;
}

// Logit or u of bit j from a GEMM row: the odd minus the even row's product for pairs.
template <bool kPairs, typename acc_t>
__device__ __forceinline__ acc_t pair_value(const acc_t* row, int64_t j) {
  if constexpr (kPairs) {
    return row[2 * j + 1] - row[2 * j];
  } else {
    return row[j];
  }
}

template <typename scalar_t, typename acc_t, typename bits_t>
struct ThresholdArgs {
  const acc_t* logits;     // (tokens, logit_stride): the chunk's x.G^T
  int64_t logit_stride;
  const acc_t* bias;       // (B)
  const acc_t* noise;      // (N, B), or null
  int64_t t0, tokens, B;   // the chunk is tokens t0 .. t0 + tokens of N
  at::PhiloxCudaState philox;
  bits_t* bits;            // (N, B)
  acc_t* z;                // (N, B) in training, else null
  scalar_t* onehot;        // (tokens, onehot_stride): H[t, 2j + bit] = 1, H[t, 2j + 1 - bit] = 0
  int64_t onehot_stride;
};

// One thread per (token, group of 4 bits): the group's noise is one Philox block
// (logistic_noise4), the same numbers the other routes draw.
template <typename scalar_t, typename acc_t, typename bits_t, bool kPairs, bool kTraining, bool kDrawNoise>
__global__ void __launch_bounds__(kEpilogueThreads) threshold_kernel(ThresholdArgs<scalar_t, acc_t, bits_t> p) {
  const int64_t groups = ceil_div(p.B, 4), e = global_thread();
  if (e >= p.tokens * groups) return;
  const int64_t t = e / groups, q = e % groups, token = p.t0 + t;
  acc_t drawn[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
  if constexpr (kDrawNoise) {
    const auto seed_offset = at::cuda::philox::unpack(p.philox);
    logistic_noise4<acc_t>(std::get<0>(seed_offset), std::get<1>(seed_offset), token, q, drawn);
  }
  const acc_t* row = p.logits + t * p.logit_stride;
  scalar_t* hot = p.onehot + t * p.onehot_stride;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t j = 4 * q + k;
    if (j >= p.B) break;
    acc_t z = pair_value<kPairs>(row, j) + p.bias[j];
    if constexpr (kTraining) {
      if constexpr (kDrawNoise) {
        z += drawn[k];
      } else {
        z += p.noise[token * p.B + j];
      }
      p.z[token * p.B + j] = z;
    }
    const bool bit = z > acc_t(0);  // a tie (0) or NaN gives 0, as the reference's argmax does
    p.bits[token * p.B + j] = static_cast<bits_t>(bit);
    hot[2 * j] = static_cast<scalar_t>(bit ? 0.0f : 1.0f);
    hot[2 * j + 1] = static_cast<scalar_t>(bit ? 1.0f : 0.0f);
  }
}

// decode: H from 0/1 bits (uint8), one thread per (token, bit); bits holds the chunk's rows.
template <typename scalar_t>
__global__ void __launch_bounds__(kEpilogueThreads)
    one_hot_kernel(const uint8_t* bits, int64_t tokens, int64_t B, scalar_t* onehot, int64_t onehot_stride) {
  const int64_t e = global_thread();
  if (e >= tokens * B) return;
  const int64_t t = e / B, j = e % B;
  const bool bit = bits[e] != 0;
  onehot[t * onehot_stride + 2 * j] = static_cast<scalar_t>(bit ? 0.0f : 1.0f);
  onehot[t * onehot_stride + 2 * j + 1] = static_cast<scalar_t>(bit ? 1.0f : 0.0f);
}

template <typename acc_t>
struct StraightThroughArgs {
  const acc_t* u;          // (tokens, u_stride): the chunk's g.G^T
  int64_t u_stride;
  const acc_t* z;          // (N, B)
  int64_t t0, tokens, B;
  acc_t tau;
};

// r = p(1 - p) u / tau with p = sigmoid(z / tau), as the CUDA-core route computes it.
template <bool kPairs, typename acc_t>
__device__ __forceinline__ acc_t straight_through_r(const StraightThroughArgs<acc_t>& p, int64_t t, int64_t j,
                                                    acc_t z) {
  const acc_t u = pair_value<kPairs>(p.u + t * p.u_stride, j);
  const acc_t prob = acc_t(1) / (acc_t(1) + exp(-z / p.tau));
  return prob * (acc_t(1) - prob) * u / p.tau;
}

// max(a, b) that keeps a NaN, so a NaN r leaves the fp16 scale at 1 rather than hiding.
template <typename acc_t>
__device__ __forceinline__ acc_t nan_max(acc_t a, acc_t b) {
  return (a != a || a > b) ? a : b;
}

// fp16: block_max[block] = max |r| over the block's (token, bit) elements.
template <typename acc_t, bool kPairs>
__global__ void __launch_bounds__(kEpilogueThreads)
    r_max_kernel(StraightThroughArgs<acc_t> p, acc_t* block_max) {
  __shared__ acc_t partial[kEpilogueThreads];
  const int64_t e = global_thread();
  acc_t m = acc_t(0);
  if (e < p.tokens * p.B) {
    const int64_t t = e / p.B, j = e % p.B;
    const acc_t r = straight_through_r<kPairs>(p, t, j, p.z[(p.t0 + t) * p.B + j]);
    m = r < acc_t(0) ? -r : r;
  }
  partial[threadIdx.x] = m;
  __syncthreads();
  for (int half = kEpilogueThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) partial[threadIdx.x] = nan_max(partial[threadIdx.x], partial[threadIdx.x + half]);
    __syncthreads();
  }
  if (threadIdx.x == 0) block_max[blockIdx.x] = partial[0];
}

// The power of two s with max|r| s in [2^13, 2^14): r s and its hi and lo parts then sit well
// inside fp16's range (65504 down to 2^-24), so r keeps ~22 significant bits. A zero, inf or
// NaN maximum keeps s = 1.
__device__ __forceinline__ float fp16_scale(float r_max) {
  if (!(r_max > 0.0f && r_max <= FLT_MAX)) return 1.0f;
  int exponent = 0;
  frexp(r_max, &exponent);  // r_max = f 2^exponent, f in [0.5, 1)
  return ldexp(1.0f, min(126, max(-126, 14 - exponent)));
}

// E's layout (gemm_plan.h BackwardPlan), for the chunk's rows.
template <typename op_t>
struct EpilogueMatrix {
  op_t* data;
  int64_t stride, r_offset, part_stride;
};

// One thread per (token, bit): writes bit j to E[t, j] and r to the r parts (pairs: hi, lo and
// their copies for dx; full types: r itself). kScaled (fp16): r is scaled by fp16_scale of
// *r_max first and 1 / s is stored in *inv_scale for the GEMMs' results. r32: float32 r for
// sum_t r, or null.
template <typename op_t, typename acc_t, bool kPairs, bool kScaled>
__global__ void __launch_bounds__(kEpilogueThreads)
    straight_through_kernel(StraightThroughArgs<acc_t> p, EpilogueMatrix<op_t> E, const acc_t* r_max, acc_t* r32,
                            acc_t* inv_scale) {
  const int64_t e = global_thread();
  if (e >= p.tokens * p.B) return;
  const int64_t t = e / p.B, j = e % p.B;
  const acc_t z = p.z[(p.t0 + t) * p.B + j];
  const acc_t r = straight_through_r<kPairs>(p, t, j, z);
  op_t* row = E.data + t * E.stride;
  row[j] = static_cast<op_t>(z > acc_t(0) ? 1.0f : 0.0f);  // NaN gives 0, as in the forward
  if constexpr (kPairs) {
    acc_t s = acc_t(1);
    if constexpr (kScaled) {
      s = fp16_scale(*r_max);
      if (e == 0) *inv_scale = acc_t(1) / s;  // exact: s is a power of two
    }
    const acc_t scaled = r * s;
    const op_t hi = static_cast<op_t>(scaled);
    const op_t lo = static_cast<op_t>(scaled - static_cast<acc_t>(hi));
    op_t* parts = row + E.r_offset + j;
    parts[0] = hi;
    parts[E.part_stride] = lo;
    parts[2 * E.part_stride] = hi;
    parts[3 * E.part_stride] = lo;
    if (r32 != nullptr) r32[t * p.B + j] = r;
  } else {
    row[E.r_offset + j] = static_cast<op_t>(r);
  }
}

// fp16 dx: out[e] = ws[e] / s, rounded once into fp16.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kEpilogueThreads)
    scale_out_kernel(const acc_t* ws, int64_t count, const acc_t* inv_scale, scalar_t* out) {
  const int64_t e = global_thread();
  if (e < count) out[e] = static_cast<scalar_t>(ws[e] * *inv_scale);
}

}  // namespace bitcodes_ext::cuda::gemm
