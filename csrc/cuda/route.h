// Which implementation a CUDA op runs: the one place where that is decided.
//
// Routes (each op implements the ones it has; `supports` says which):
//   kCudaCores  the kernels built on tile_gemm.cuh, on the CUDA cores, for every dtype.
//   kGemm       route 1: ATen (cuBLAS) GEMMs, tensor cores for bf16/fp16 with float32
//               accumulation, and our fused epilogues, per chunk of tokens (gemm_plan.h).
//
// The rule: the supported route with the lowest predicted time in cost_model.h, until a GPU
// has measured them. BITCODES_CUDA_ROUTE=<name> forces a route wherever it supports the problem
// (tests and benchmarks run each route this way); unset or `auto` takes the rule.
#pragma once

#include "cost_model.h"
#include "problem.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace bitcodes_ext::cuda {

enum class Route { kCudaCores, kGemm };

inline const char* route_name(Route route) {
  switch (route) {
    case Route::kCudaCores:
      return "cores";
    case Route::kGemm:
      return "gemm";
  }
  return "?";
}

inline bool supports(Route route, const Problem&) {
  switch (route) {
    case Route::kCudaCores:
    case Route::kGemm:
      return true;
  }
  return false;
}

// Predicted seconds on an H100 (cost_model.h).
inline double predicted_seconds(Route route, const Problem& problem, const DeviceRates& rates = kH100) {
  switch (route) {
    case Route::kCudaCores:
      return cost::cores_route(problem, rates);
    case Route::kGemm:
      return cost::gemm_route(problem, rates);
  }
  return 0;
}

inline Route choose_route(const Problem& problem) {
  constexpr Route kAll[] = {Route::kCudaCores, Route::kGemm};
  const char* forced = std::getenv("BITCODES_CUDA_ROUTE");
  if (forced != nullptr && *forced != '\0' && std::strcmp(forced, "auto") != 0) {
    bool known = false;
    for (const Route route : kAll) {
      if (std::strcmp(forced, route_name(route)) != 0) continue;
      known = true;
      if (supports(route, problem)) return route;
    }
    TORCH_CHECK_VALUE(known, "BITCODES_CUDA_ROUTE must be auto or the name of a route (cores, gemm), got '", forced,
                      "'");
  }
  Route best = Route::kCudaCores;
  double best_seconds = 0;
  bool found = false;
  for (const Route route : kAll) {
    if (!supports(route, problem)) continue;
    const double seconds = predicted_seconds(route, problem);
    if (!found || seconds < best_seconds) {
      best = route;
      best_seconds = seconds;
      found = true;
    }
  }
  return best;
}

}  // namespace bitcodes_ext::cuda
