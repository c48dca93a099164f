// Host-side argument checks shared by the CPU and CUDA implementations.
// Every message names the argument and what was expected.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <optional>
#include <vector>

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

// The shape (..., last) whose leading dims are those of `like`.
inline std::vector<int64_t> with_last_dim(const at::Tensor& like, int64_t last) {
  auto shape = like.sizes().vec();
  shape.back() = last;
  return shape;
}

// A (..., num_bits) tensor whose leading dims are those of `like` (x or grad_y).
inline void check_per_bit(const at::Tensor& t, const at::Tensor& like, int64_t num_bits,
                          const char* name, const char* op) {
  const auto expected = with_last_dim(like, num_bits);
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

// Checks every argument of bitcodes_ext::forward, and returns the noise (if any) converted to a
// contiguous tensor in the accumulation type (undefined without noise).
inline at::Tensor check_forward_and_convert_noise(const at::Tensor& x, const at::Tensor& codebook,
                                                  const std::optional<at::Tensor>& noise, double temperature,
                                                  bool training, const char* op) {
  check_codebook(codebook, op);
  check_x(x, codebook, "x", op);
  check_temperature(temperature, op);
  if (!noise.has_value()) return at::Tensor();
  TORCH_CHECK_VALUE(training, op, ": noise is only used in training; pass None in eval");
  TORCH_CHECK_TYPE(at::isFloatingType(noise->scalar_type()), op, ": noise must be a floating-point tensor, got ",
                   noise->scalar_type());
  check_per_bit(*noise, x, codebook.size(0) / 2, "noise", op);
  check_same_device(*noise, "noise", codebook, op);
  return noise->to(at::toOpMathType(x.scalar_type())).contiguous();
}

// Every argument of bitcodes_ext::backward.
inline void check_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& codebook,
                           const at::Tensor& z, double temperature, const char* op) {
  check_codebook(codebook, op);
  check_x(x, codebook, "x", op);
  check_x(grad_y, codebook, "grad_y", op);
  TORCH_CHECK_VALUE(grad_y.sizes() == x.sizes(), op, ": grad_y must have the shape of x ", x.sizes(), ", got ",
                    grad_y.sizes());
  check_temperature(temperature, op);
  check_per_bit(z, x, codebook.size(0) / 2, "z", op);
  const auto acc_type = at::toOpMathType(x.scalar_type());
  TORCH_CHECK_TYPE(z.scalar_type() == acc_type, op, ": z must have dtype ", acc_type, ", got ", z.scalar_type());
  check_same_device(z, "z", codebook, op);
}

// Every argument of bitcodes_ext::decode_backward (the bit values are checked where they are read).
inline void check_decode_backward(const at::Tensor& grad_y, const at::Tensor& bits, const at::Tensor& codebook,
                                  const char* op) {
  check_codebook(codebook, op);
  check_bits(bits, codebook, op);
  check_x(grad_y, codebook, "grad_y", op);
  const auto expected = with_last_dim(bits, codebook.size(1));
  TORCH_CHECK_VALUE(grad_y.sizes().vec() == expected, op, ": grad_y must have shape ", c10::IntArrayRef(expected),
                    ", got ", grad_y.sizes());
}

}  // namespace bitcodes_ext
