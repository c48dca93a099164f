// The token sums of the codebook gradient on the GPU, reduced in two stages without atomics:
// each block sums one chunk of tokens for a 64 x 64 tile of S = bits^T g + r^T x, and the
// chunk rows are then added by a (deterministic) ATen sum. The chunking depends only on the
// shapes, so the result is bitwise reproducible on a given device.
#pragma once

#include "launch.cuh"
#include "tile_gemm.cuh"

#include <ATen/ATen.h>

namespace bitcodes_ext::cuda {

// The codebook sums' bit operand, element (j0 + i, t) of bits^T, as 1 or 0 (0 past N and B).
// PositiveZ: from the training margins z, bit = [z > 0] (NaN gives 0), for the training backward.
template <typename acc_t>
struct PositiveZ {
  const acc_t* z;
  int64_t N, B, j0;
  __device__ __forceinline__ acc_t operator()(int i, int64_t t) const {
    return t < N && j0 + i < B && z[t * B + j0 + i] > acc_t(0) ? acc_t(1) : acc_t(0);
  }
};

// NonzeroBit: from 0/1 bits as uint8, for decode_backward.
template <typename acc_t>
struct NonzeroBit {
  const uint8_t* bits;
  int64_t N, B, j0;
  __device__ __forceinline__ acc_t operator()(int i, int64_t t) const {
    return t < N && j0 + i < B && bits[t * B + j0 + i] != 0 ? acc_t(1) : acc_t(0);
  }
};

// partials[chunk, j, d] = sum over the chunk's tokens t of bit(t, j) g[t, d] (+ r[t, j] x[t, d]).
// x and r are null for decode_backward.
template <typename scalar_t, typename acc_t, typename Bits>
__global__ void __launch_bounds__(kThreads)
    codebook_sums_kernel(Bits bits, const scalar_t* g, const scalar_t* x, const acc_t* r, int64_t N, int64_t B,
                         int64_t D, int64_t chunk_tokens, acc_t* partials) {
  __shared__ TileStage<acc_t> stage;
  const int64_t j0 = int64_t(blockIdx.x) * kTile, d0 = int64_t(blockIdx.y) * kTile;
  const int64_t t_begin = int64_t(blockIdx.z) * chunk_tokens, t_end = min(N, t_begin + chunk_tokens);
  bits.j0 = j0;
  Micro<acc_t> acc;
  zero(acc);
  tile_gemm<false, false>(bits, ColumnsAlongI<acc_t, scalar_t>{g, N, D, d0}, t_begin, t_end, stage, acc);
  if (r != nullptr) {
    tile_gemm<false, false>(ColumnsAlongI<acc_t, acc_t>{r, N, B, j0}, ColumnsAlongI<acc_t, scalar_t>{x, N, D, d0},
                            t_begin, t_end, stage, acc);
  }
  acc_t* out = partials + int64_t(blockIdx.z) * B * D;
  for_each_owned(j0, B, d0, D, [&](int a, int b, int64_t j, int64_t d) { out[j * D + d] = acc[a][b]; });
}

// S (B, D) in the accumulation type. Chunks are whole slices of 16 tokens, so no slice of
// tile_gemm crosses into the next chunk; about 512 blocks keep the GPU busy.
template <typename scalar_t, typename acc_t, typename Bits>
at::Tensor codebook_sums(const Bits& bits, const at::Tensor& g, const at::Tensor& x, const at::Tensor& r, int64_t N,
                         int64_t B, int64_t D, const at::TensorOptions& acc_options) {
  const int64_t tiles = ceil_div(B, kTile) * ceil_div(D, kTile);
  int64_t chunks = std::max<int64_t>(1, std::min(ceil_div(512, tiles), ceil_div(N, 256)));
  const int64_t chunk_tokens = ceil_div(ceil_div(N, chunks), kStep) * kStep;
  chunks = ceil_div(N, chunk_tokens);
  auto partials = at::empty({chunks, B, D}, acc_options);
  const dim3 grid(ceil_div(B, kTile), ceil_div(D, kTile), chunks);
  codebook_sums_kernel<scalar_t, acc_t><<<grid, kThreads, 0, current_stream()>>>(
      bits, g.const_data_ptr<scalar_t>(), x.defined() ? x.const_data_ptr<scalar_t>() : nullptr,
      r.defined() ? r.const_data_ptr<acc_t>() : nullptr, N, B, D, chunk_tokens, partials.mutable_data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return partials.sum(0);
}

}  // namespace bitcodes_ext::cuda
