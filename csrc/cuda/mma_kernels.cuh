// Route `mma` kernels (bf16/fp16 inputs, sm_80+), one block of 8 warps per 128 tokens:
//   mma_forward_kernel: the one-pass fused forward. For each chunk of 64 bits, the logits
//     x . C^T over the chunk's 128 codebook rows, then in registers z = odd - even + bias
//     (+ noise), bits, z; each lane keeps its bits as a mask in the layout of the one-hot A
//     fragment, and y = one-hot . C follows on the tensor cores. x is read once per 64 bits
//     (once for B <= 64), y and the bits are written once.
//   mma_vq_kernel: scores |c|^2 - 2 x.c per tile of 128 codes by mma, a running argmin per
//     lane (ties to the lowest code), the four lanes of a token row agree, and the winner's
//     distance is recomputed in double.
#pragma once

#include "../vq_select.h"
#include "mma_tiles.cuh"
#include "noise.cuh"

#include <ATen/cuda/PhiloxCudaState.h>

#include <limits>

namespace bitcodes_ext::cuda {

// num_bits up to which route mma runs: each lane keeps ceil(num_bits / 64) mask words.
constexpr int64_t kMmaMaxBits = 512;

template <typename scalar_t>
struct MmaForwardArgs {
  const scalar_t* x;         // (N, D)
  const scalar_t* codebook;  // (2B, D)
  const float* bias;         // (B)
  const float* noise;        // (N, B), or null
  int64_t N, B, D;
  at::PhiloxCudaState philox;
  scalar_t* y;     // (N, D)
  int64_t* bits;   // (N, B)
  float* z;        // (N, B) in training, else null
};

// v[i] for a lane-dependent i, without indexing a register array at run time.
__device__ __forceinline__ float pick(const float (&v)[4], int i) {
  return i == 0 ? v[0] : i == 1 ? v[1] : i == 2 ? v[2] : v[3];
}

// The noise of the lane's four margins in n-tiles 2jp and 2jp + 1 of a chunk: out[2jj + h] for
// n-tile 2jp + jj and token row group + 8h. The four lanes of a group need bit t of the groups of
// four bits g0, g0 + 1 of rows group and group + 8: one Philox block each, so lane t draws block
// (row group + 8 (t & 1), bit group g0 + (t >> 1)) and the quad transposes them with shuffles.
__device__ __forceinline__ void draw_noise4(uint64_t seed, uint64_t offset, int64_t token0, int64_t g0,
                                            float (&out)[4]) {
  const int t = lane_id() % 4;
  float v[4];
  logistic_noise4<float>(seed, offset, token0 + 8 * (t & 1), g0 + (t >> 1), v);
#pragma unroll
  for (int b = 0; b < 4; ++b) out[b] = pick(v, t);  // out[t] = v[t]; the other three are replaced below
#pragma unroll
  for (int m = 1; m < 4; ++m) {
    // Lane t sends output t ^ m of its block to lane t ^ m and receives output t of block t ^ m.
    const float got = __shfl_xor_sync(0xffffffffu, pick(v, t ^ m), m);
#pragma unroll
    for (int b = 0; b < 4; ++b)
      if (b == (t ^ m)) out[b] = got;
  }
}

template <typename scalar_t, bool kTraining, bool kDrawNoise>
__global__ void __launch_bounds__(kMmaThreads) mma_forward_kernel(MmaForwardArgs<scalar_t> p) {
  __shared__ MmaStage stage;
  const int warp = warp_id(), lane = lane_id(), group = lane / 4, t = lane % 4;
  const int64_t row0 = int64_t(blockIdx.x) * kMmaTokens, token0 = row0 + 16 * warp + group;
  uint64_t seed = 0, offset = 0;
  if constexpr (kDrawNoise) {
    const auto seed_offset = at::cuda::philox::unpack(p.philox);
    seed = std::get<0>(seed_offset);
    offset = std::get<1>(seed_offset);
  }
  // Word c, bit 2j + h: the bit of pair 64c + 4j + t of token row group + 8h (n-tile j of chunk c),
  // which is bit 4 (ks % 8) + r of k step ks = 8c + j / 2, r = 2 (j % 2) + h, as one_hot_fragment reads.
  uint32_t mask[kMmaMaxBits / 64] = {};
  const int64_t chunks = ceil_div(p.B, 64);
  for (int64_t c = 0; c < chunks; ++c) {
    float acc[16][4] = {};
    logits_pass(p.x, p.N, row0, p.codebook, 2 * p.B, kMmaRows * c, p.D, stage, acc);
    uint32_t word = 0;
#pragma unroll
    for (int jp = 0; jp < 8; ++jp) {
      if (64 * c + 8 * jp >= p.B) break;  // no pair of n-tiles 2jp, 2jp + 1 is a bit
      float noise[4] = {};
      if constexpr (kDrawNoise) draw_noise4(seed, offset, token0, 16 * c + 2 * jp, noise);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int j = 2 * jp + jj;
        const int64_t i = 64 * c + 4 * j + t;  // the pair of codebook rows 2i, 2i + 1 = columns 2t, 2t + 1
        if (i >= p.B) continue;
        const float bias = p.bias[i];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int64_t token = token0 + 8 * h;
          float z = acc[j][2 * h + 1] - acc[j][2 * h] + bias;
          if constexpr (kTraining) z += kDrawNoise ? noise[2 * jj + h] : (token < p.N ? p.noise[token * p.B + i] : 0.f);
          const bool bit = z > 0.f;  // a NaN gives 0, as the reference's argmax does
          word |= uint32_t(bit) << (2 * j + h);
          if (token < p.N) {
            p.bits[token * p.B + i] = bit;
            if constexpr (kTraining) p.z[token * p.B + i] = z;
          }
        }
      }
    }
    mask[c] = word;
  }
  overlapped_sum_pass(mask, p.codebook, p.B, p.D, p.N, row0, stage, p.y);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMmaThreads)
    mma_vq_kernel(const scalar_t* x, const scalar_t* codebook, const float* norms, int64_t N, int64_t K, int64_t D,
                  int64_t* codes, scalar_t* dist) {
  __shared__ MmaStage stage;
  __shared__ long long winner[kMmaTokens];
  const int warp = warp_id(), lane = lane_id(), group = lane / 4, t = lane % 4;
  const int64_t row0 = int64_t(blockIdx.x) * kMmaTokens;
  // Per token row group + 8h, chosen by vq_select.h's rule; a lane visits its codes in increasing
  // order (vq_better_later_code). A row with no finite score keeps code 0.
  float best[2] = {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity()};
  long long code[2] = {0, 0};
  for (int64_t c0 = 0; c0 < K; c0 += kMmaRows) {
    float acc[16][4] = {};
    logits_pass(x, N, row0, codebook, K, c0, D, stage, acc);
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t c = c0 + 8 * j + 2 * t + e;
        if (c >= K) continue;
        const float norm = norms[c];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float score = norm - 2.f * acc[j][2 * h + e];
          if (vq_better_later_code(score, best[h])) {
            best[h] = score;
            code[h] = c;
          }
        }
      }
  }
  // The four lanes of a group hold the same two rows.
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int m = 1; m <= 2; m *= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, best[h], m);
      const long long other_code = __shfl_xor_sync(0xffffffffu, code[h], m);
      if (vq_better(other, other_code, best[h], code[h])) {
        best[h] = other;
        code[h] = other_code;
      }
    }
  if (t == 0) {
    winner[16 * warp + group] = code[0];
    winner[16 * warp + group + 8] = code[1];
  }
  __syncthreads();
  // The winner's distance in double, a warp per token row: lanes split the features.
  for (int r = 0; r < 16; ++r) {
    const int64_t token = row0 + 16 * warp + r;
    if (token >= N) break;  // uniform in the warp
    const long long c = winner[16 * warp + r];
    double sum = 0;
    for (int64_t d = lane; d < D; d += 32) {
      const double diff = static_cast<double>(x[token * D + d]) - static_cast<double>(codebook[c * D + d]);
      sum += diff * diff;
    }
#pragma unroll
    for (int m = 16; m >= 1; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    if (lane == 0) {
      codes[token] = c;
      dist[token] = static_cast<scalar_t>(sqrt(sum));
    }
  }
}

}  // namespace bitcodes_ext::cuda
