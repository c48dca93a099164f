// The token sums of the codebook gradient on the GPU, reduced in two stages without atomics:
// each block sums one chunk of tokens for a (bit tile x feature tile) of S = bits^T g + r^T x,
// and the chunk rows are then added by a (deterministic) ATen sum. The tiles and the chunking
// depend only on the shapes, so the result is bitwise reproducible on a given device.
#pragma once

#include "launch.cuh"
#include "tile_gemm.cuh"

#include <ATen/ATen.h>

namespace bitcodes_ext::cuda {

// partials[chunk, j, d] = sum over the chunk's tokens t of bit(t, j) g[t, d] (+ r[t, j] x[t, d]).
// `bits` is an (N, B) matrix read as 0/1 (Positive margins or Nonzero bytes); x and r are null
// for decode_backward. Every operand is read along i (bits or features), k being the token.
template <typename scalar_t, class T, class Bits>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    codebook_sums_kernel(Bits bits, const scalar_t* g, const scalar_t* x, const typename T::acc* r, int64_t N,
                         int64_t B, int64_t D, int64_t chunk_tokens, typename T::acc* partials) {
  using acc_t = typename T::acc;
  __shared__ TileStage<T> stage;
  const int64_t j0 = int64_t(blockIdx.x) * T::kRows, d0 = int64_t(blockIdx.y) * T::kCols;
  const int64_t t_begin = int64_t(blockIdx.z) * chunk_tokens, t_end = min(N, t_begin + chunk_tokens);
  typename T::Acc acc;
  zero<T>(acc);
  tile_gemm<T, false, false>(bits, j0, matrix<acc_t>(g, N, D), d0, t_begin, t_end, stage, acc);
  if (r != nullptr) {
    tile_gemm<T, false, false>(matrix<acc_t>(r, N, B), j0, matrix<acc_t>(x, N, D), d0, t_begin, t_end, stage, acc);
  }
  store_tile<T>(acc, j0, B, d0, D, partials + int64_t(blockIdx.z) * B * D);
}

// S (B, D) in the accumulation type, from bits given as a Matrix over (N, B). Chunks are whole
// slices of tokens; about 512 blocks keep the GPU busy.
template <typename scalar_t, typename acc_t, class Bits>
at::Tensor codebook_sums(const Bits& bits, const at::Tensor& g, const at::Tensor& x, const at::Tensor& r, int64_t N,
                         int64_t B, int64_t D, const at::TensorOptions& acc_options) {
  at::Tensor partials;
  with_width(B, [&](auto width) {
    using T = SumsTileFor<acc_t, decltype(width)::value>;
    const int64_t tiles = ceil_div(B, T::kRows) * ceil_div(D, T::kCols);
    int64_t chunks = std::max<int64_t>(1, std::min(ceil_div(512, tiles), ceil_div(N, 256)));
    const int64_t chunk_tokens = ceil_div(ceil_div(N, chunks), T::kStep) * T::kStep;
    chunks = ceil_div(N, chunk_tokens);
    partials = at::empty({chunks, B, D}, acc_options);
    const dim3 grid(ceil_div(B, T::kRows), ceil_div(D, T::kCols), chunks);
    codebook_sums_kernel<scalar_t, T, Bits><<<grid, T::kThreads, 0, current_stream()>>>(
        bits, g.const_data_ptr<scalar_t>(), x.defined() ? x.const_data_ptr<scalar_t>() : nullptr,
        r.defined() ? r.const_data_ptr<acc_t>() : nullptr, N, B, D, chunk_tokens, partials.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return partials.sum(0);
}

}  // namespace bitcodes_ext::cuda
