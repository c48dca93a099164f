// Host-side launch helpers shared by the CUDA ops.
#pragma once

#include "tile_gemm.cuh"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace bitcodes_ext::cuda {

inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// One block per 64 tokens in grid dimension x (up to 2^31 - 1 blocks, past any tensor that
// fits), times `other` in dimension y.
inline dim3 token_tiles(int64_t N, int64_t other = 1) {
  return dim3(static_cast<unsigned>(ceil_div(N, kTile)), static_cast<unsigned>(other));
}

}  // namespace bitcodes_ext::cuda
