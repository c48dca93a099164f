// Host entry points of route `mma` (kernels in mma_kernels.cuh), called by the ops' CUDA
// implementations once route.h has chosen it. Arguments are checked there; here x and the
// codebook are bf16 or fp16, contiguous, with features % 8 == 0.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/PhiloxCudaState.h>

namespace bitcodes_ext::cuda {

// forward: fills y (N, D), bits (N, B) and, in training, z (N, B) in float. bias (B) is float;
// noise (N, B) float or undefined; draw_noise draws it from `philox` instead.
void mma_forward(const at::Tensor& x, const at::Tensor& codebook, const at::Tensor& bias, const at::Tensor& noise,
                 const at::PhiloxCudaState& philox, bool training, bool draw_noise, at::Tensor& y, at::Tensor& bits,
                 at::Tensor& z);

// vq: fills codes (N) and dist (N) for observations x (N, D) and codebook (K, D); norms (K) float.
void mma_vq(const at::Tensor& x, const at::Tensor& codebook, const at::Tensor& norms, at::Tensor& codes,
            at::Tensor& dist);

}  // namespace bitcodes_ext::cuda
