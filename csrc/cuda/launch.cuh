// Host-side launch helpers shared by the CUDA ops.
//
// Every source in csrc/cuda/ also runs on a CPU emulation of CUDA (tools/cuda_emulator), which
// compiles it as C++ after a few textual rewrites (tools/cuda_emulator/build.py). A kernel author
// keeps to these spellings, or extends build.py and emu_cuda.h first:
// - CUDA-only headers are among build.py's CUDA_INCLUDES (ATen/cuda/CUDAContext.h,
//   c10/cuda/CUDAException.h, c10/cuda/CUDAGuard.h, ATen/cuda/CUDAGeneratorImpl.h); each becomes
//   emu_cuda.h, which stubs what the host code uses from them.
// - Shared memory is a `__shared__` variable at kernel scope (it becomes `static`: a block's
//   threads are fibers of one OS thread and blocks run one after another). Dynamic shared memory is
//   spelled exactly `extern __shared__ uint32_t mask[];`.
// - A launch is `kernel<template args><<<grid, block, shared_bytes, stream>>>(args)`: explicit
//   template arguments and all four launch parameters; blocks are 1-D (threadIdx.x only).
// - The CUDA registrations are spelled `TORCH_LIBRARY_IMPL(bitcodes_ext, CUDA, m)` and
//   `m.impl(`; they become ops of the test-only library bitcodes_emu.
// - 16-byte vector accesses go through vector_io.cuh (Vec, load_vec, store_vec); the emulator
//   aborts on a misaligned one, as a GPU faults, so every fast path checks alignment first.
// - Device code uses only what emu_cuda.h provides: __syncthreads, __shfl_xor_sync with a full
//   mask, atomicOr on unsigned, exp/log/fma/sqrt/min/max/frexp/ldexp, the Philox engine and
//   at::cuda::philox::unpack, and the tensor-core and async-copy instructions through the
//   wrappers of mma.cuh (mma_m16n8k16, ldmatrix_x1/x2/x4[_trans], cp_async_cg16/ca16,
//   cp_async_commit, cp_async_wait<N>). Anything else fails to compile there, which is the point.
// - Warp-collective calls (shuffles, ldmatrix, mma) are made by all 32 lanes of a warp in full
//   warps; shared memory is a plain `__shared__` object (e.g. a struct of uint16_t arrays with
//   alignas) that cp.async fills and ldmatrix reads. Host code may read
//   at::cuda::getCurrentDeviceProperties()->major (the emulator reports 9) and ->multiProcessorCount (set by tests: launch choices that fill the SMs).
// - Host code may call ATen on the op's tensors: there they are CPU tensors, so anything
//   CUDA-only (cuBLAS, mm's out_dtype) needs a CPU stand-in, as gemm_ops.h gives the GEMMs.
#pragma once

#include "tile_gemm.cuh"

#include <type_traits>

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

namespace bitcodes_ext::cuda {

inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream().stream(); }

inline int sm_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

// Calls f(std::integral_constant<int, W>) with the column tile W (16, 32 or 64) that pads
// num_bits the least: kernels are compiled for these three widths, and problems of more than
// 64 bits take several tiles of 64.
template <typename F>
void with_width(int64_t num_bits, F&& f) {
  if (num_bits <= 16) {
    f(std::integral_constant<int, 16>{});
  } else if (num_bits <= 32) {
    f(std::integral_constant<int, 32>{});
  } else {
    f(std::integral_constant<int, 64>{});
  }
}

// A grid of ceil(rows / tile_rows) blocks in dimension x (up to 2^31 - 1, past any tensor that
// fits) times `other` in dimension y.
inline dim3 grid_of(int64_t rows, int64_t tile_rows, int64_t other = 1) {
  return dim3(static_cast<unsigned>(ceil_div(rows, tile_rows)), static_cast<unsigned>(other));
}

}  // namespace bitcodes_ext::cuda
