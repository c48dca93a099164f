// Codebook-derived terms shared by the CPU and CUDA implementations (plain ATen ops, so they
// run on the codebook's device):
//   w_i = c[2i+1] - c[2i],   bias_i = -(|c[2i+1]|^2 - |c[2i]|^2) / 2 for the euclidean metric,
// and the assembly of the codebook gradient from its token sums
//   S = bits^T g + r^T x,   dc[2i+1] = S_i - rsum_i c[2i+1],   dc[2i] = sum_t g - S_i + rsum_i c[2i]
// (rsum terms only for the euclidean metric).
#pragma once

#include <ATen/ATen.h>

namespace bitcodes_ext {

inline at::Tensor pair_differences(const at::Tensor& codebook) {
  return codebook.slice(0, 1, c10::nullopt, 2) - codebook.slice(0, 0, c10::nullopt, 2);
}

inline at::Tensor euclidean_bias(const at::Tensor& codebook) {
  const auto even = codebook.slice(0, 0, c10::nullopt, 2), odd = codebook.slice(0, 1, c10::nullopt, 2);
  return (even.square() - odd.square()).sum(1) * 0.5;
}

// S (num_bits, D), grad_sum (D) and r_sum (num_bits) in the accumulation type of `codebook`.
inline at::Tensor assemble_codebook_grad(const at::Tensor& S, const at::Tensor& grad_sum,
                                         const at::Tensor& r_sum, const at::Tensor& codebook,
                                         bool euclidean, at::ScalarType out_dtype) {
  auto grad = at::empty(codebook.sizes(), S.options());
  auto grad_even = grad.slice(0, 0, c10::nullopt, 2), grad_odd = grad.slice(0, 1, c10::nullopt, 2);
  grad_odd.copy_(S);
  grad_even.copy_(grad_sum.unsqueeze(0) - S);
  if (euclidean) {
    grad_odd.sub_(r_sum.unsqueeze(1) * codebook.slice(0, 1, c10::nullopt, 2));
    grad_even.add_(r_sum.unsqueeze(1) * codebook.slice(0, 0, c10::nullopt, 2));
  }
  return grad.to(out_dtype);
}

}  // namespace bitcodes_ext
