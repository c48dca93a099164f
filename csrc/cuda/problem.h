// What a CUDA op call computes, as route.h and its cost model (cost_model.h) see it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>

namespace bitcodes_ext::cuda {

enum class CudaOp { kForward, kBackward, kDecode, kDecodeBackward, kVq };

// Each op by the name of its schema (csrc/bitcodes.cpp; bitcodes_ext.info.OPS in Python).
inline constexpr std::pair<const char*, CudaOp> kCudaOpNames[] = {{"forward", CudaOp::kForward},
                                                                 {"backward", CudaOp::kBackward},
                                                                 {"decode", CudaOp::kDecode},
                                                                 {"decode_backward", CudaOp::kDecodeBackward},
                                                                 {"vq", CudaOp::kVq}};

inline CudaOp cuda_op_named(const std::string& name) {
  for (const auto& [op_name, op] : kCudaOpNames) {
    if (name == op_name) return op;
  }
  TORCH_CHECK_VALUE(false, "op must be forward, backward, decode, decode_backward or vq, got '", name, "'");
  return CudaOp::kForward;
}

// `width` is num_bits for the Bitcodes ops and num_codes for vq; bits_bytes is the size of one
// element of the forward's bits output (8 for the default int64).
struct Problem {
  CudaOp op;
  at::ScalarType dtype;
  int64_t tokens, width, features;
  bool training;
  int64_t bits_bytes = 8;
};

}  // namespace bitcodes_ext::cuda
