// CUDA kernels of bitcodes_ext::forward and ::backward.
//   forward (one block per 64 tokens): logits x.W^T for every bit tile, the threshold with
//     bias and noise, then the overlapped sum from the block's bits kept in shared memory;
//     x is read and y written once.
//   backward: r = p(1-p)(g.W^T)/tau per (token tile, bit tile); dx = r.W per (token tile,
//     feature tile); the codebook sums in codebook_sums.cuh.
#pragma once

#include "noise.cuh"
#include "overlapped_sum.cuh"
#include "tile_gemm.cuh"

#include <ATen/cuda/PhiloxCudaState.h>

namespace bitcodes_ext::cuda {

template <typename scalar_t, typename acc_t>
struct ForwardArgs {
  const scalar_t* x;       // (N, D)
  const acc_t* w;          // (B, D): c[2i+1] - c[2i]
  const acc_t* bias;       // (B)
  const acc_t* codebook;   // (2B, D)
  const acc_t* noise;      // (N, B), or null
  int64_t N, B, D;
  at::PhiloxCudaState philox;
  scalar_t* y;             // (N, D)
  int64_t* bits;           // (N, B)
  acc_t* z;                // (N, B) in training, else null
};

__host__ __device__ inline int64_t mask_words(int64_t num_bits) { return (num_bits + 31) / 32; }

inline size_t mask_bytes(int64_t num_bits) { return size_t(kTile) * mask_words(num_bits) * sizeof(uint32_t); }

// The fused forward keeps the bits of its tokens in shared memory, next to the tile stage,
// within the 48 KiB a kernel may use without opting in (up to ~4000 bits in float64, ~5100
// in float32); past it the forward writes the bits and decode_kernel sums them in a second pass.
template <typename acc_t>
bool fits_fused(int64_t num_bits) {
  return sizeof(TileStage<acc_t>) + mask_bytes(num_bits) <= 48 * 1024;
}

template <typename scalar_t, typename acc_t, bool kTraining, bool kDrawNoise, bool kFused>
__global__ void __launch_bounds__(kThreads) forward_kernel(ForwardArgs<scalar_t, acc_t> p) {
  __shared__ TileStage<acc_t> stage;
  extern __shared__ uint32_t mask[];
  const int64_t row0 = int64_t(blockIdx.x) * kTile, words = mask_words(p.B);
  uint64_t seed = 0, offset = 0;
  if constexpr (kDrawNoise) {
    const auto seed_offset = at::cuda::philox::unpack(p.philox);
    seed = std::get<0>(seed_offset);
    offset = std::get<1>(seed_offset);
  }
  if constexpr (kFused) {
    for (int64_t e = threadIdx.x; e < kTile * words; e += kThreads) mask[e] = 0;
    __syncthreads();
  }
  for (int64_t j0 = 0; j0 < p.B; j0 += kTile) {
    Micro<acc_t> acc;
    zero(acc);
    tile_gemm<true, true>(RowsAlongK<acc_t, scalar_t>{p.x, p.N, p.D, row0}, RowsAlongK<acc_t, acc_t>{p.w, p.B, p.D, j0},
                          0, p.D, stage, acc);
    for_each_owned(row0, p.N, j0, p.B, [&](int a, int b, int64_t t, int64_t j) {
      acc_t z = acc[a][b] + p.bias[j];
      if constexpr (kTraining) {
        if constexpr (kDrawNoise) {
          z += logistic_noise<acc_t>(seed, offset, t, j);
        } else {
          z += p.noise[t * p.B + j];
        }
        p.z[t * p.B + j] = z;
      }
      const bool bit = z > acc_t(0);  // a NaN gives 0, as the reference's argmax does
      p.bits[t * p.B + j] = bit;
      if constexpr (kFused) {
        if (bit) atomicOr(&mask[(t - row0) * words + j / 32], 1u << (j % 32));
      }
    });
  }
  if constexpr (kFused) {
    __syncthreads();
    overlapped_sum_tile(MaskBit{mask, words}, row0, p.N, p.codebook, p.B, p.D, stage, p.y);
  }
}

// r[t, j] = p(1 - p) (g[t] . w_j) / tau with p = sigmoid(z[t, j] / tau); grid (token tiles, bit tiles).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    straight_through_kernel(const scalar_t* g, const acc_t* w, const acc_t* z, int64_t N, int64_t B, int64_t D,
                            acc_t tau, acc_t* r) {
  __shared__ TileStage<acc_t> stage;
  const int64_t row0 = int64_t(blockIdx.x) * kTile, j0 = int64_t(blockIdx.y) * kTile;
  Micro<acc_t> acc;
  zero(acc);
  tile_gemm<true, true>(RowsAlongK<acc_t, scalar_t>{g, N, D, row0}, RowsAlongK<acc_t, acc_t>{w, B, D, j0}, 0, D,
                        stage, acc);
  for_each_owned(row0, N, j0, B, [&](int a, int b, int64_t t, int64_t j) {
    const acc_t p = acc_t(1) / (acc_t(1) + exp(-z[t * B + j] / tau));
    r[t * B + j] = p * (acc_t(1) - p) * acc[a][b] / tau;
  });
}

// dx[t, d] = sum_j r[t, j] w[j, d]; grid (token tiles, feature tiles).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    input_grad_kernel(const acc_t* r, const acc_t* w, int64_t N, int64_t B, int64_t D, scalar_t* dx) {
  __shared__ TileStage<acc_t> stage;
  const int64_t row0 = int64_t(blockIdx.x) * kTile, d0 = int64_t(blockIdx.y) * kTile;
  Micro<acc_t> acc;
  zero(acc);
  tile_gemm<true, false>(RowsAlongK<acc_t, acc_t>{r, N, B, row0}, ColumnsAlongI<acc_t, acc_t>{w, B, D, d0}, 0, B,
                         stage, acc);
  for_each_owned(row0, N, d0, D, [&](int a, int b, int64_t t, int64_t d) {
    dx[t * D + d] = static_cast<scalar_t>(acc[a][b]);
  });
}

}  // namespace bitcodes_ext::cuda
