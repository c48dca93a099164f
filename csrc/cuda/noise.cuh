// Per-bit logistic noise for training on the GPU, from torch's default CUDA generator the way
// ATen's dropout draws it: philox_cuda_state under the generator's mutex on the host, and
// at::cuda::philox::unpack in the kernel (graph-safe: under capture the offset is read on the
// device). Token t reads Philox subsequence t, and bit i the 32-bit output i % 4 of block
// offset / 4 + i / 4, so a number depends only on (seed, offset, t, i), never on the launch.
#pragma once

#include <ATen/core/PhiloxRNGEngine.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/PhiloxUtils.cuh>

#include <cstdint>
#include <mutex>

namespace bitcodes_ext::cuda {

// Reserves 4 * ceil(num_bits / 4) numbers of every subsequence for one call.
inline at::PhiloxCudaState reserve_philox(int64_t num_bits) {
  auto gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(std::nullopt,
                                                                 at::cuda::detail::getDefaultCUDAGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->philox_cuda_state(static_cast<uint64_t>((num_bits + 3) / 4 * 4));
}

// log(u / (1 - u)) with u uniform on (0, 1), from 23 random bits: the same construction as the CPU
// kernels, so u and 1 - u are exact in float and the noise is finite (|n| < 16.7).
template <typename acc_t>
__device__ __forceinline__ acc_t logistic_from_bits(uint32_t draw) {
  const acc_t u = (acc_t(draw >> 9) + acc_t(0.5)) * (acc_t(1) / acc_t(1 << 23));
  return log(u / (acc_t(1) - u));
}

// The noise of bits 4 * group .. 4 * group + 3 of a token: the four outputs of one Philox block.
// Kernels that own four consecutive bits of a token draw them with one call.
template <typename acc_t>
__device__ __forceinline__ void logistic_noise4(uint64_t seed, uint64_t offset, int64_t token, int64_t group,
                                                acc_t out[4]) {
  at::Philox4_32 engine(seed, static_cast<uint64_t>(token), offset / 4 + static_cast<uint64_t>(group));
#pragma unroll
  for (int k = 0; k < 4; ++k) out[k] = logistic_from_bits<acc_t>(engine());
}

// The noise of one bit, for kernels whose threads own scattered bits: the same number as
// logistic_noise4 gives, at the cost of a whole Philox block.
template <typename acc_t>
__device__ __forceinline__ acc_t logistic_noise(uint64_t seed, uint64_t offset, int64_t token, int64_t bit) {
  at::Philox4_32 engine(seed, static_cast<uint64_t>(token), offset / 4 + static_cast<uint64_t>(bit / 4));
  uint32_t draw = engine();
  for (int64_t k = 0; k < bit % 4; ++k) draw = engine();
  return logistic_from_bits<acc_t>(draw);
}

}  // namespace bitcodes_ext::cuda
