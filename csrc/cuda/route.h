// Which implementation a CUDA op runs: the one place where that is decided.
//
// Routes (each op implements the ones it has; `supports` says which):
//   kCudaCores  the kernels built on tile_gemm.cuh, on the CUDA cores, for every dtype.
//
// BITCODES_CUDA_ROUTE=<name> forces a route wherever it supports the problem (tests and
// benchmarks run each route this way); unset or `auto` takes the rule in choose_route.
#pragma once

#include "cores_model.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace bitcodes_ext::cuda {

enum class CudaOp { kForward, kBackward, kDecode, kDecodeBackward, kVq };
enum class Route { kCudaCores };

// What a call computes: `width` is num_bits for the Bitcodes ops and num_codes for vq.
struct Problem {
  CudaOp op;
  at::ScalarType dtype;
  int64_t tokens, width, features;
  bool training;
};

inline const char* route_name(Route route) {
  switch (route) {
    case Route::kCudaCores:
      return "cores";
  }
  return "?";
}

inline bool supports(Route route, const Problem&) {
  switch (route) {
    case Route::kCudaCores:
      return true;
  }
  return false;
}

// The predicted seconds of `problem` on `route`, from the cost model of benchmarks/NOTES.md
// ("CUDA"); the rule compares routes by it, and a GPU run tests it.
inline double predicted_seconds(Route route, const Problem& problem) {
  switch (route) {
    case Route::kCudaCores: {
      const cores_model::Shape shape{problem.tokens, problem.width, problem.features,
                                     static_cast<int>(c10::elementSize(problem.dtype)),
                                     problem.dtype == at::kDouble, problem.training};
      switch (problem.op) {
        case CudaOp::kForward:
          return cores_model::forward_seconds(shape);
        case CudaOp::kBackward:
          return cores_model::backward_seconds(shape);
        case CudaOp::kDecode:
          return cores_model::decode_seconds(shape);
        case CudaOp::kDecodeBackward:
          return cores_model::decode_backward_seconds(shape);
        case CudaOp::kVq:
          return cores_model::vq_seconds(shape);
      }
    }
  }
  return 0;
}

inline Route choose_route(const Problem& problem) {
  constexpr Route kAll[] = {Route::kCudaCores};
  const char* forced = std::getenv("BITCODES_CUDA_ROUTE");
  if (forced != nullptr && *forced != '\0' && std::strcmp(forced, "auto") != 0) {
    bool known = false;
    for (const Route route : kAll) {
      if (std::strcmp(forced, route_name(route)) != 0) continue;
      known = true;
      if (supports(route, problem)) return route;
    }
    TORCH_CHECK_VALUE(known, "BITCODES_CUDA_ROUTE must be auto or the name of a route (cores), got '", forced, "'");
  }
  return Route::kCudaCores;
}

}  // namespace bitcodes_ext::cuda
