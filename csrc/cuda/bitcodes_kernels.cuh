// CUDA kernels of bitcodes_ext::forward and ::backward, on tiles sized to the number of bits.
//   forward, fused (num_bits <= 64; one block per tile of tokens): logits x.W^T, the threshold
//     with bias and noise, the bits into a shared-memory mask, then the overlapped sum of the
//     block's tokens; x is read and y written once.
//   forward, split (more bits, or too few tokens to fill the GPU): grid (token tiles, bit
//     tiles); the bits also go out packed, 32 to a word, for decode_kernel to sum over a grid of
//     (token tiles, feature tiles).
//   backward: r = p(1-p)(g.W^T)/tau per (token tile, bit tile); dx = r.W per (token tile,
//     feature tile); the codebook sums in codebook_sums.cuh.
#pragma once

#include "noise.cuh"
#include "overlapped_sum.cuh"
#include "tile_gemm.cuh"
#include "vector_io.cuh"

#include <ATen/cuda/PhiloxCudaState.h>

namespace bitcodes_ext::cuda {

// The fused forward keeps the bits of its tokens in shared memory, one or two words a token.
constexpr int64_t kFusedBits = 64;

__host__ __device__ inline int64_t bit_words(int64_t num_bits) { return (num_bits + 31) / 32; }

template <typename scalar_t, typename acc_t>
struct ForwardArgs {
  const scalar_t* x;       // (N, D)
  const acc_t* w;          // (B, D): c[2i+1] - c[2i]
  const acc_t* bias;       // (B)
  const acc_t* codebook;   // (2B, D)
  const acc_t* noise;      // (N, B), or null
  int64_t N, B, D;
  at::PhiloxCudaState philox;
  scalar_t* y;             // (N, D), written by the fused kernel
  int64_t* bits;           // (N, B)
  acc_t* z;                // (N, B) in training, else null
  uint32_t* words;         // (N, bit_words(B)): the bits packed, written by the split kernel
};

// The noise of the thread's run of bits col .. col + kVec - 1 of a token (col a multiple of
// kVec): logistic_noise's numbers, bit for bit. One Philox block gives 4 consecutive bits, so a
// float thread's run of 4 costs one block, a double thread's run of 2 half of one.
template <class T>
__device__ __forceinline__ void run_noise(uint64_t seed, uint64_t offset, int64_t token, int64_t col,
                                          typename T::acc (&out)[T::kVec]) {
  static_assert(T::kVec == 4 || T::kVec == 2, "runs of 4 or 2 bits");
  typename T::acc block[4];
  logistic_noise4<typename T::acc>(seed, offset, token, col / 4, block);
  const bool upper = (col & 2) != 0;  // a run of 2 in the block's upper half; never for runs of 4
#pragma unroll
  for (int e = 0; e < T::kVec; ++e) out[e] = upper ? block[(e + 2) & 3] : block[e];
}

template <typename scalar_t, class T, bool kTraining, bool kDrawNoise, bool kFused>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks) forward_kernel(ForwardArgs<scalar_t, typename T::acc> p) {
  using acc_t = typename T::acc;
  constexpr int kWords = (T::kCols + 31) / 32;
  static_assert(!kFused || T::kCols <= kFusedBits, "the fused kernel has one bit tile");
  __shared__ TileStage<T> stage;
  __shared__ uint32_t tile_bits[T::kRows * kWords];  // bit j - j0 of tile row r: word r * kWords + (j - j0) / 32
  const int64_t row0 = int64_t(blockIdx.x) * T::kRows, j0 = kFused ? 0 : int64_t(blockIdx.y) * T::kCols;
  uint64_t seed = 0, offset = 0;
  if constexpr (kDrawNoise) {
    const auto seed_offset = at::cuda::philox::unpack(p.philox);
    seed = std::get<0>(seed_offset);
    offset = std::get<1>(seed_offset);
  }
  for (int e = threadIdx.x; e < T::kRows * kWords; e += T::kThreads) tile_bits[e] = 0;  // ordered by tile_gemm's barriers

  typename T::Acc acc;
  zero<T>(acc);
  tile_gemm<T, true, true>(matrix<acc_t>(p.x, p.N, p.D), row0, matrix<acc_t>(p.w, p.B, p.D), j0, 0, p.D, stage, acc);

  const bool vector_out = runs_aligned<acc_t, T::kVec>(p.z, p.B) && runs_aligned<int64_t, T::kVec>(p.bits, p.B);
  for_each_run<T>(row0, p.N, j0, p.B, [&](int m, int g, int64_t t, int64_t j, int count) {
    acc_t z[T::kVec];
#pragma unroll
    for (int e = 0; e < T::kVec; ++e) z[e] = e < count ? acc[m][g * T::kVec + e] + p.bias[j + e] : acc_t(0);
    if constexpr (kTraining) {
      if constexpr (kDrawNoise) {
        acc_t n[T::kVec];
        run_noise<T>(seed, offset, t, j, n);
#pragma unroll
        for (int e = 0; e < T::kVec; ++e) z[e] += n[e];
      } else {
#pragma unroll
        for (int e = 0; e < T::kVec; ++e)
          if (e < count) z[e] += p.noise[t * p.B + j + e];
      }
      store_run(p.z + t * p.B + j, z, count, vector_out);
    }
    int64_t bits[T::kVec];
    uint32_t run = 0;
#pragma unroll
    for (int e = 0; e < T::kVec; ++e) {
      const bool bit = e < count && z[e] > acc_t(0);  // a NaN gives 0, as the reference's argmax does
      bits[e] = bit;
      run |= uint32_t(bit) << e;
    }
    store_run(p.bits + t * p.B + j, bits, count, vector_out);
    const int64_t c = j - j0;
    if (run != 0) atomicOr(&tile_bits[(t - row0) * kWords + c / 32], run << (c % 32));
  });
  __syncthreads();

  if constexpr (kFused) {
    for (int64_t d0 = 0; d0 < p.D; d0 += T::kCols) {
      typename T::Acc sum;
      zero<T>(sum);
      select_sum<T>(tile_bits, kWords, 0, p.codebook, p.B, p.D, d0, 0, p.B, stage, sum);
      store_tile<T>(sum, row0, p.N, d0, p.D, p.y);
    }
  } else {
    // Each bit tile is whole words (a 16- or 32-bit tile is the only one of its problem).
    const int64_t words = bit_words(p.B);
    for (int e = threadIdx.x; e < T::kRows * kWords; e += T::kThreads) {
      const int64_t t = row0 + e / kWords, word = j0 / 32 + e % kWords;
      if (t < p.N && word < words) p.words[t * words + word] = tile_bits[e];
    }
  }
}

// r[t, j] = p(1 - p) (g[t] . w_j) / tau with p = sigmoid(z[t, j] / tau); grid (token tiles, bit tiles).
template <typename scalar_t, class T>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    straight_through_kernel(const scalar_t* g, const typename T::acc* w, const typename T::acc* z, int64_t N,
                            int64_t B, int64_t D, typename T::acc tau, typename T::acc* r) {
  using acc_t = typename T::acc;
  __shared__ TileStage<T> stage;
  const int64_t row0 = int64_t(blockIdx.x) * T::kRows, j0 = int64_t(blockIdx.y) * T::kCols;
  typename T::Acc acc;
  zero<T>(acc);
  tile_gemm<T, true, true>(matrix<acc_t>(g, N, D), row0, matrix<acc_t>(w, B, D), j0, 0, D, stage, acc);
  const bool vector_out = runs_aligned<acc_t, T::kVec>(r, B);
  for_each_run<T>(row0, N, j0, B, [&](int m, int gr, int64_t t, int64_t j, int count) {
    acc_t out[T::kVec];
#pragma unroll
    for (int e = 0; e < T::kVec; ++e) {
      const acc_t p = e < count ? acc_t(1) / (acc_t(1) + exp(-z[t * B + j + e] / tau)) : acc_t(0);
      out[e] = p * (acc_t(1) - p) * acc[m][gr * T::kVec + e] / tau;
    }
    store_run(r + t * B + j, out, count, vector_out);
  });
}

// dx[t, d] = sum_j r[t, j] w[j, d]; grid (token tiles, feature tiles).
template <typename scalar_t, class T>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    input_grad_kernel(const typename T::acc* r, const typename T::acc* w, int64_t N, int64_t B, int64_t D,
                      scalar_t* dx) {
  using acc_t = typename T::acc;
  __shared__ TileStage<T> stage;
  const int64_t row0 = int64_t(blockIdx.x) * T::kRows, d0 = int64_t(blockIdx.y) * T::kCols;
  typename T::Acc acc;
  zero<T>(acc);
  tile_gemm<T, true, false>(matrix<acc_t>(r, N, B), row0, matrix<acc_t>(w, B, D), d0, 0, B, stage, acc);
  store_tile<T>(acc, row0, N, d0, D, dx);
}

}  // namespace bitcodes_ext::cuda
