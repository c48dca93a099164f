// Host-side argument checks shared by the CPU and CUDA implementations.
// Every message names the argument and what was expected.
#pragma once

#include <ATen/ATen.h>

namespace bitcodes_ext {

inline void check_codebook(const at::Tensor& codebook, const char* op) {
  TORCH_CHECK_TYPE(at::isFloatingType(codebook.scalar_type()), op,
                   ": codebook must be a floating-point tensor, got ", codebook.scalar_type());
  TORCH_CHECK_VALUE(codebook.dim() == 2 && codebook.size(0) >= 2 && codebook.size(0) % 2 == 0 &&
                        codebook.size(1) >= 1,
                    op, ": codebook must have shape (2 * num_bits, features) with num_bits >= 1 and ",
                    "features >= 1, got ", codebook.sizes());
}

// vq's codebook: (num_codes, features), any number of codes.
inline void check_vq_codebook(const at::Tensor& codebook, const char* op) {
  TORCH_CHECK_TYPE(at::isFloatingType(codebook.scalar_type()), op,
                   ": codebook must be a floating-point tensor, got ", codebook.scalar_type());
  TORCH_CHECK_VALUE(codebook.dim() == 2 && codebook.size(0) >= 1 && codebook.size(1) >= 1, op,
                    ": codebook must have shape (num_codes, features) with num_codes >= 1 and features >= 1, got ",
                    codebook.sizes());
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& codebook,
                              const char* op) {
  TORCH_CHECK_VALUE(t.device() == codebook.device(), op, ": ", name,
                    " and codebook must be on the same device, got ", t.device(), " and ",
                    codebook.device());
}

inline void check_x(const at::Tensor& x, const at::Tensor& codebook, const char* name,
                    const char* op) {
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), op, ": ", name,
                   " must be a floating-point tensor (float32, float64, float16 or bfloat16), got ",
                   x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == codebook.size(1), op, ": ", name,
                    " must have shape (..., features) with features = ", codebook.size(1),
                    ", got ", x.sizes());
  check_same_device(x, name, codebook, op);
  TORCH_CHECK_TYPE(x.scalar_type() == codebook.scalar_type(), op, ": ", name,
                   " and codebook must have the same dtype, got ", x.scalar_type(), " and ",
                   codebook.scalar_type());
}

// A (..., num_bits) tensor whose leading dims are those of `like` (x or grad_y).
inline void check_per_bit(const at::Tensor& t, const at::Tensor& like, int64_t num_bits,
                          const char* name, const char* op) {
  auto expected = like.sizes().vec();
  expected.back() = num_bits;
  TORCH_CHECK_VALUE(t.sizes().vec() == expected, op, ": ", name, " must have shape ", c10::IntArrayRef(expected),
                    ", got ", t.sizes());
}

inline void check_bits(const at::Tensor& bits, const at::Tensor& codebook, const char* op) {
  TORCH_CHECK_TYPE(bits.scalar_type() == at::kBool || at::isIntegralType(bits.scalar_type(), false),
                   op, ": bits must be an integer or bool tensor of 0s and 1s, got ",
                   bits.scalar_type());
  TORCH_CHECK_VALUE(bits.dim() >= 1 && bits.size(-1) == codebook.size(0) / 2, op,
                    ": bits must have shape (..., num_bits) with num_bits = ", codebook.size(0) / 2,
                    ", got ", bits.sizes());
  check_same_device(bits, "bits", codebook, op);
}

inline void check_temperature(double temperature, const char* op) {
  TORCH_CHECK_VALUE(temperature > 0 && std::isfinite(temperature), op,
                    ": temperature must be a finite number > 0, got ", temperature);
}

}  // namespace bitcodes_ext
