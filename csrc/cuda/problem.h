// What a CUDA op call computes, as route.h and its cost model (cost_model.h) see it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace bitcodes_ext::cuda {

enum class CudaOp { kForward, kBackward, kDecode, kDecodeBackward, kVq };

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
