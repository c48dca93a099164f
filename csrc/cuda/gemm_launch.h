// Route `gemm` (see route.h and gemm_plan.h): the ops as ATen GEMMs with our epilogue
// kernels, on chunks of tokens. The op entry points (bitcodes_cuda.cu, decode_cuda.cu,
// vq_cuda.cu) check the arguments, then call these with contiguous inputs.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace bitcodes_ext::cuda::gemm {

// noise: undefined, or (..., B) contiguous in the accumulation type.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& codebook,
                                                       const at::Tensor& noise, bool training, bool euclidean,
                                                       at::ScalarType bits_dtype);

std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& codebook,
                                            const at::Tensor& z, double temperature, bool euclidean);

// bits: contiguous uint8 0/1 (checked by the caller).
at::Tensor decode(const at::Tensor& bits, const at::Tensor& codebook);

at::Tensor decode_backward(const at::Tensor& grad_y, const at::Tensor& bits, const at::Tensor& codebook);

std::tuple<at::Tensor, at::Tensor> vq(const at::Tensor& observations, const at::Tensor& codebook);

}  // namespace bitcodes_ext::cuda::gemm
