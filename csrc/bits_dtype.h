// The dtype of the forward's `bits` output, shared by the CPU and CUDA implementations:
// int64 (the default, as bitcodes-pytorch returns), or uint8 / bool for callers that want
// 1 byte per bit instead of 8 (at D = 256, B = 64 the int64 bits are as many bytes as x).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace bitcodes_ext {

inline void check_bits_dtype(at::ScalarType bits_dtype, const char* op) {
  TORCH_CHECK_TYPE(bits_dtype == at::kLong || bits_dtype == at::kByte || bits_dtype == at::kBool, op,
                   ": bits_dtype must be torch.int64, torch.uint8 or torch.bool, got ", bits_dtype);
}

// Calls f(bits_t{}) with the C++ type of bits_dtype (checked first).
template <typename F>
void dispatch_bits_dtype(at::ScalarType bits_dtype, F&& f) {
  switch (bits_dtype) {
    case at::kByte:
      return f(uint8_t{});
    case at::kBool:
      return f(bool{});
    default:
      return f(int64_t{});
  }
}

}  // namespace bitcodes_ext
