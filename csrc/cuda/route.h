// Which implementation a CUDA op runs: the one place where that is decided.
//
// Routes (each op implements the ones it has; `supports` says which):
//   kCudaCores  the kernels built on tile_gemm.cuh, on the CUDA cores, for every dtype.
//   kMma        bf16/fp16 forward and vq fused on the tensor cores (mma.sync, ldmatrix, cp.async;
//               mma_kernels.cuh), sm_80 and newer, features % 8 == 0, num_bits <= 512.
//
// BITCODES_CUDA_ROUTE=<name> forces a route wherever it supports the problem (tests and
// benchmarks run each route this way); unset or `auto` takes the rule in choose_route: the
// fastest by the cost model (predicted_seconds) among the routes trusted for auto.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace bitcodes_ext::cuda {

enum class CudaOp { kForward, kBackward, kDecode, kDecodeBackward, kVq };
enum class Route { kCudaCores, kMma };

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
    case Route::kMma:
      return "mma";
  }
  return "?";
}

// The current device's compute capability (major), from mma_cuda.cu.
int current_device_major();

inline bool supports(Route route, const Problem& problem) {
  switch (route) {
    case Route::kCudaCores:
      return true;
    case Route::kMma:
      return (problem.op == CudaOp::kForward || problem.op == CudaOp::kVq) &&
             (problem.dtype == at::kBFloat16 || problem.dtype == at::kHalf) && problem.features % 8 == 0 &&
             (problem.op != CudaOp::kForward || problem.width <= 512) && current_device_major() >= 8;
  }
  return false;
}

// Whether `auto` may choose a route. Route mma's kernels are verified only on the CUDA emulator,
// which executes the instructions its wrappers stand for but never their inline PTX (operand
// order, constraints, address conversion): it stays opt-in (BITCODES_CUDA_ROUTE=mma) until a GPU
// run passes tests/test_cuda_mma.py and the benchmark confirms the model; then set this to true.
inline bool trusted_for_auto(Route route) { return route == Route::kCudaCores; }

// The cost model of benchmarks/NOTES.md ("CUDA"): predicted seconds on an H100 SXM as the
// largest of bytes over each memory's rate and FLOPs over the rate of the units that run them
// (no other overlap assumed). The rates are assumptions until a GPU run measures them.
struct DeviceRates {
  double dram = 3.0e12;        // bytes/s, HBM3
  double l2 = 7.0e12;          // bytes/s from L2 to the SMs
  double cores = 30e12;        // FLOP/s that tile_gemm reaches (8 LDS.32 per 16 FFMA, issue #11)
  double cores_dram = 0.4e12;  // bytes/s the CUDA-core kernels reach (scalar loads, one stage)
  double mma_sync = 400e12;    // FLOP/s of dense bf16/fp16 mma.sync (Hopper's 989 needs wgmma)
  double core_ops = 33e12;     // scalar operations/s over all CUDA-core lanes (the FP32 issue rate)
};

inline double predicted_seconds(Route route, const Problem& p, const DeviceRates& rate = {}) {
  const double T = double(p.tokens), D = double(p.features), W = double(p.width);
  const double in = double(c10::elementSize(p.dtype));
  auto up = [](double v, double to) { return std::ceil(v / to) * to; };
  if (p.op == CudaOp::kForward) {
    // x and y, int64 bits, float z in training.
    const double io = T * D * 2 * in + T * W * 8 + (p.training ? T * W * 4 : 0);
    if (route == Route::kMma) {
      const double rows = up(2 * W, 16);                           // codebook rows, in n-tile pairs
      const double x_reads = std::ceil(W / 64);                    // x streamed once per 64 bits
      const double flops = 2 * T * D * rows * 2;                   // logits + one-hot sum
      const double l2 = 2 * std::ceil(T / 128) * rows * D * in;   // codebook twice per 128 tokens
      const double dram = io + (x_reads - 1) * T * D * in;
      return std::max({dram / rate.dram, l2 / rate.l2, flops / rate.mma_sync});
    }
    const double flops = 2 * T * D * up(W, 64) * 2;  // logits + select-and-add, 64 bit columns
    return std::max(io / rate.cores_dram, flops / rate.cores);
  }
  if (p.op == CudaOp::kVq) {
    const double io = T * D * in + T * (8 + in);
    if (route == Route::kMma) {
      const double flops = 2 * T * up(W, 128) * D;
      // per 128 x 128 tile: x and the codes again from L2; the argmin's ~4 CUDA-core operations per score
      const double l2 = (std::ceil(T / 128) * W + std::ceil(W / 128) * T) * D * in;
      const double epilogue = 4 * T * W / rate.core_ops;
      return std::max({io / rate.dram, l2 / rate.l2, flops / rate.mma_sync, epilogue});
    }
    return std::max(io / rate.cores_dram, 2 * T * up(W, 64) * D / rate.cores);
  }
  return 0;  // only route cores implements the other ops
}

inline Route choose_route(const Problem& problem) {
  constexpr Route kAll[] = {Route::kCudaCores, Route::kMma};
  const char* forced = std::getenv("BITCODES_CUDA_ROUTE");
  if (forced != nullptr && *forced != '\0' && std::strcmp(forced, "auto") != 0) {
    bool known = false;
    for (const Route route : kAll) {
      if (std::strcmp(forced, route_name(route)) != 0) continue;
      known = true;
      if (supports(route, problem)) return route;
    }
    TORCH_CHECK_VALUE(known, "BITCODES_CUDA_ROUTE must be auto or the name of a route (cores, mma), got '", forced, "'");
  }
  Route best = Route::kCudaCores;
  for (const Route route : kAll) {
    if (trusted_for_auto(route) && supports(route, problem) &&
        predicted_seconds(route, problem) < predicted_seconds(best, problem))
      best = route;
  }
  return best;
}

}  // namespace bitcodes_ext::cuda
