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
// largest of bytes over each memory's rate and operations over the rate of the units that run
// them (no other overlap assumed), per kernel. The rates are assumptions until a GPU run
// measures them; correct them here, in one place.
struct DeviceRates {
  double dram = 3.0e12;      // bytes/s, HBM3 (what a copy reaches of the 3.35 TB/s peak)
  double l2 = 7.0e12;        // bytes/s from L2 to the SMs
  double mma_sync = 400e12;  // FLOP/s of dense bf16/fp16 mma.sync (Hopper's 989 needs wgmma)
  double core_ops = 33e12;   // instructions/s over all CUDA-core lanes: 132 SMs x 128 lanes x 1.98 GHz
                             // (FFMA, FADD, FSEL, LDS, LDG, integer alike)
  double fp64_op_cost = 2;   // DFMA / DADD issue slots: the FP64 pipe does 64 lanes per SM per clock
  double launch = 4e-6;      // s per kernel: launch, ramp-up and tail
  double sms = 132;
};

// Route cores (the kernels on tile_gemm.cuh): per kernel, the larger of its DRAM bytes and its
// issued instructions (counted per multiply-add from the sm_90 SASS, NOTES "CUDA"), plus a launch.
namespace cores_cost {

struct Shape {
  double T, B, D, in;  // tokens, bits (or codes), features, input element bytes
  bool fp64, training;
};

inline double padded(double n, double tile) { return std::ceil(n / tile) * tile; }

// The bit tile the kernels pick (launch.cuh with_width) and the token rows of a block tile
// (bitcodes_kernels.cuh: 256 x 16, 128 x 32, 128 x 64 in float; 128 x 16/32, 64 x 64 in double).
inline double bit_tile(double bits) { return bits <= 16 ? 16 : bits <= 32 ? 32 : 64; }
inline double token_rows(const Shape& s) {
  const double w = bit_tile(s.B);
  return s.fp64 ? (w == 64 ? 64 : 128) : (w == 16 ? 256 : 128);
}

// Issue slots per multiply-add of a rows x cols block-tile product: the fma (a DFMA counts
// twice), the LDS.128 of the micro-tile (float 8 x 8: 4 per 64 FFMA; double 4 x 4: 4 per 16
// DFMA), and staging each k-slice (an LDG per vector and an STS per element: 1/rows + 1/cols).
inline double per_fma(const Shape& s, const DeviceRates& r, double rows, double cols) {
  return (s.fp64 ? r.fp64_op_cost : 1.0) + (s.fp64 ? 0.25 : 1.0 / 16) + 1.25 * (1 / rows + 1 / cols);
}

// Per pair and feature of the overlapped sum: a select and an add (double: two selects and a
// DADD) and the LDS.128 of the even and odd rows.
inline double per_select_add(const Shape& s, const DeviceRates& r) {
  return s.fp64 ? 2 + r.fp64_op_cost + 0.25 : 2 + 1.0 / 16;
}

inline double kernel(double instructions, double bytes, const DeviceRates& r) {
  return std::max(instructions / r.core_ops, bytes / r.dram) + r.launch;
}

// The forward: fused (one kernel) where bits <= 64 and the token tiles fill the SMs, else the
// bits kernel over (token, bit) tiles and decode over (token, feature) tiles of 64.
inline double forward(const Shape& s, const DeviceRates& r) {
  const double w = bit_tile(s.B), acc = s.fp64 ? 8 : 4;
  const bool fused = s.B <= 64 && s.T / token_rows(s) >= r.sms;
  const double logits = s.T * padded(s.B, w) * s.D * per_fma(s, r, token_rows(s), w) +
                        s.T * s.B * (12 + (s.training ? (s.fp64 ? 60 : 25) : 0));  // threshold; Philox per 4 bits
  const double logits_bytes = s.T * (s.D * s.in + 8 * s.B + (s.training ? acc * s.B : 0));
  const double sum = s.T * padded(s.B, 8) * padded(s.D, fused ? w : 64) * per_select_add(s, r);
  if (fused) return kernel(logits + sum, logits_bytes + s.T * s.D * s.in, r);
  const double packed = s.T * 4 * padded(s.B, 32) / 32;  // the packed bits, written and read
  return kernel(logits, logits_bytes + packed, r) + kernel(sum, s.T * s.D * s.in + packed, r);
}

// The training backward: r (u = g.W^T), dx = r.W, the codebook sums, and ATen's sums of g and r.
inline double backward(const Shape& s, const DeviceRates& r) {
  const double w = bit_tile(s.B), acc = s.fp64 ? 8 : 4, cols = token_rows(s);
  return kernel(s.T * padded(s.B, w) * s.D * per_fma(s, r, token_rows(s), w) + s.T * s.B * 20,
                s.T * (s.D * s.in + 2 * acc * s.B), r) +
         kernel(s.T * padded(s.D, 64) * padded(s.B, s.fp64 ? 8 : 16) * per_fma(s, r, s.fp64 ? 64 : 128, 64),
                s.T * (acc * s.B + s.D * s.in), r) +
         kernel(2 * s.T * padded(s.B, w) * padded(s.D, cols) * per_fma(s, r, w, cols),
                s.T * (2 * acc * s.B + 2 * s.D * s.in), r) +
         kernel(0, s.T * (s.D * s.in + acc * s.B), r) + r.launch;
}

// decode (from_bits): uint8 bits in, y out, over (token, feature) tiles of 64 features.
inline double decode(const Shape& s, const DeviceRates& r) {
  return kernel(s.T * padded(s.B, 8) * padded(s.D, 64) * per_select_add(s, r), s.T * (s.B + s.D * s.in), r);
}

// decode_backward: the codebook sums of bits^T g (and ATen's sum of g).
inline double decode_backward(const Shape& s, const DeviceRates& r) {
  const double w = bit_tile(s.B), cols = token_rows(s);
  return kernel(s.T * padded(s.B, w) * padded(s.D, cols) * per_fma(s, r, w, cols), s.T * (s.B + 2 * s.D * s.in), r) +
         r.launch;
}

// vq over B = num_codes codes: the scores as a (token x code) product in tiles of 64 codes.
inline double vq(const Shape& s, const DeviceRates& r) {
  return kernel(s.T * padded(s.B, 64) * s.D * per_fma(s, r, s.fp64 ? 64 : 128, 64), s.T * (s.D * s.in + 8 + s.in), r);
}

}  // namespace cores_cost

inline double predicted_seconds(Route route, const Problem& p, const DeviceRates& rate = {}) {
  const double T = double(p.tokens), D = double(p.features), W = double(p.width);
  const double in = double(c10::elementSize(p.dtype));
  auto up = [](double v, double to) { return std::ceil(v / to) * to; };
  if (route == Route::kCudaCores) {
    const cores_cost::Shape s{T, W, D, in, p.dtype == at::kDouble, p.training};
    switch (p.op) {
      case CudaOp::kForward:
        return cores_cost::forward(s, rate);
      case CudaOp::kBackward:
        return cores_cost::backward(s, rate);
      case CudaOp::kDecode:
        return cores_cost::decode(s, rate);
      case CudaOp::kDecodeBackward:
        return cores_cost::decode_backward(s, rate);
      case CudaOp::kVq:
        return cores_cost::vq(s, rate);
    }
  }
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
  }
  return 0;  // route mma implements only the forward and vq
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
