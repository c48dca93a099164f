// Which implementation a CUDA op runs: the one place where that is decided.
//
// Routes (each op implements the ones it has; `supports` says which):
//   kCores      the kernels built on tile_gemm.cuh, on the CUDA cores, for every dtype.
//   kGemm       ATen (cuBLAS) GEMMs, tensor cores for bf16/fp16 with float32
//               accumulation, and our fused epilogues, per chunk of tokens (gemm_plan.h); every
//               op and dtype.
//   kMma        bf16/fp16 forward and vq fused on the tensor cores (mma.sync, ldmatrix, cp.async;
//               mma_kernels.cuh), sm_80 and newer, features % 8 == 0, num_bits <= 512.
//
// BITCODES_CUDA_ROUTE=<name> forces a route wherever it supports the problem (tests and
// benchmarks run each route this way); unset or `auto` takes the rule in choose_route: the
// fastest by the cost model (cost_model.h, the one model of every route) among the routes
// trusted for auto.
#pragma once

#include "cost_model.h"
#include "problem.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace bitcodes_ext::cuda {

enum class Route { kCores, kGemm, kMma };
inline constexpr Route kAllRoutes[] = {Route::kCores, Route::kGemm, Route::kMma};

inline const char* route_name(Route route) {
  switch (route) {
    case Route::kCores:
      return "cores";
    case Route::kGemm:
      return "gemm";
    case Route::kMma:
      return "mma";
  }
  return "?";
}

// The current device's compute capability (major), from mma_cuda.cu.
int current_device_major();

// `major`: the device's compute capability; the model's callers (python_module.cpp) pass the
// modelled H100's 9 instead of asking a device.
inline bool supports(Route route, const Problem& problem, int major) {
  switch (route) {
    case Route::kCores:
    case Route::kGemm:
      return true;
    case Route::kMma:
      return (problem.op == CudaOp::kForward || problem.op == CudaOp::kVq) &&
             (problem.dtype == at::kBFloat16 || problem.dtype == at::kHalf) && problem.features % 8 == 0 &&
             (problem.op != CudaOp::kForward || problem.width <= 512) && major >= 8;
  }
  return false;
}

// Whether `auto` may choose a route for a problem. The evidence: the first GPU run (an H200,
// 2026-12-04, benchmarks/results/gpu-session-2026-12-04/), where every route passed the CUDA
// tests, and the #3 grid (2^20 tokens) timed per route in bf16 and float32.
// - gemm: cuBLAS's GEMMs (the tensor cores the reference itself uses under autocast) and our
//   epilogue kernels: the baseline that cannot lose to the reference (issue 11). The measured
//   times were 0.86-1.36x its model's.
// - cores: for float32 and float64, where the reference's GEMMs run on the CUDA cores too; in
//   float32 it beat gemm at every point of the grid (1.1-1.6x), as the model chose. Not for
//   bf16/fp16: there it lost to gemm at every point, and ran 1.7-2.4x slower than its model.
// - mma: correct on the GPU (tests/test_cuda_mma.py passed), but its eval forward ran 1.7-2.5x
//   slower than its model: trusted, the model would have picked it at all six eval points of
//   the grid and lost five of them to gemm (it won only at (256, 64): 1.09 vs 1.61 ms). Opt-in
//   (BITCODES_CUDA_ROUTE=mma) until its model is refitted to those times.
inline bool trusted_for_auto(Route route, const Problem& problem) {
  switch (route) {
    case Route::kGemm:
      return true;
    case Route::kCores:
      return problem.dtype != at::kBFloat16 && problem.dtype != at::kHalf;
    case Route::kMma:
      return false;
  }
  return false;
}

// Predicted seconds on an H100 SXM (cost_model.h).
inline double predicted_seconds(Route route, const Problem& problem, const DeviceRates& rates = kH100) {
  switch (route) {
    case Route::kCores:
      return cost::cores_route(problem, rates);
    case Route::kGemm:
      return cost::gemm_route(problem, rates);
    case Route::kMma:
      return cost::mma_route(problem, rates);
  }
  return 0;
}

// The forced route, else the trusted supported route of lowest predicted time (gemm on a tie).
inline Route choose_route(const Problem& problem, int major) {
  const char* forced = std::getenv("BITCODES_CUDA_ROUTE");
  if (forced != nullptr && *forced != '\0' && std::strcmp(forced, "auto") != 0) {
    bool known = false;
    for (const Route route : kAllRoutes) {
      if (std::strcmp(forced, route_name(route)) != 0) continue;
      known = true;
      if (supports(route, problem, major)) return route;
    }
    TORCH_CHECK_VALUE(known, "BITCODES_CUDA_ROUTE must be auto or the name of a route (cores, gemm, mma), got '",
                      forced, "'");
  }
  // gemm supports and is trusted for every problem, so there is always a candidate.
  Route best = Route::kGemm;
  for (const Route route : kAllRoutes) {
    if (trusted_for_auto(route, problem) && supports(route, problem, major) &&
        predicted_seconds(route, problem) < predicted_seconds(best, problem))
      best = route;
  }
  return best;
}

// On the current device.
inline Route choose_route(const Problem& problem) { return choose_route(problem, current_device_major()); }

}  // namespace bitcodes_ext::cuda
