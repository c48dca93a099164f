// The cost model, the one model of every route, that choose_route (route.h) follows until a GPU
// has measured: the predicted time of a route for a Problem on an H100 SXM, from the bytes each
// kernel or GEMM moves and the FLOPs it does. Routes cores and gemm: each step costs
// max(bytes / bandwidth, FLOPs / rate) plus one launch per call, and steps add up (nothing
// overlaps); route mma's one-pass kernels: the largest of their memory and compute times. benchmarks/NOTES.md ("CUDA") tabulates it at the #3
// grid, and the GPU benchmark tests it: correct the constants here, in one place.
#pragma once

#include "gemm_plan.h"
#include "problem.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace bitcodes_ext::cuda {

// Realistic rates on an H100 SXM (not the data-sheet peaks in the comments).
struct DeviceRates {
  double hbm = 3.0e12;      // bytes/s, HBM3 streaming (peak 3.35 TB/s)
  double tensor = 700e12;   // FLOP/s, dense bf16/fp16 GEMM with fp32 accumulation (peak ~990)
  double fp32 = 50e12;      // FLOP/s, fp32 GEMM on the CUDA cores, no TF32 (peak 67)
  double fp64 = 50e12;      // FLOP/s, fp64 GEMM on the DMMA units (peak 67)
  double launch = 4e-6;     // s per kernel or GEMM call, back to back in one stream, host side included
  // Route cores (tile_gemm.cuh): its kernels issue one instruction a lane and clock on the CUDA
  // cores (core_ops below: FFMA, FADD, FSEL, LDS.128, LDG.128, integer alike); a DFMA or DADD
  // takes fp64_op_cost issue slots (the FP64 pipe does 64 lanes per SM and clock).
  double fp64_op_cost = 2;
  double sms = 132;
  // Route mma's kernels (mma_kernels.cuh): mma.sync without wgmma reaches well under Hopper's
  // dense peak; their codebook and x tiles come again from L2; the argmin runs on the CUDA cores.
  double l2 = 7.0e12;          // bytes/s from L2 to the SMs
  double mma_sync = 400e12;    // FLOP/s of dense bf16/fp16 mma.sync
  double core_ops = 33e12;     // instructions/s over all CUDA-core lanes: 132 SMs x 128 lanes x 1.98 GHz
};

inline constexpr DeviceRates kH100{};

namespace cost {

struct Total {
  const DeviceRates& rates;
  double seconds = 0;

  void step(double bytes, double flops, double flop_rate, double bandwidth, double calls) {
    seconds += std::max(bytes / bandwidth, flop_rate > 0 ? flops / flop_rate : 0.0) + calls * rates.launch;
  }
};

inline double round_up(double n, double m) { return double(gemm::chunks_of(int64_t(n), int64_t(m)) * int64_t(m)); }

// The GEMM rate of route gemm for the input dtype.
inline double gemm_rate(at::ScalarType dtype, const DeviceRates& r) {
  if (gemm::uses_pairs(dtype)) return r.tensor;
  return dtype == at::kDouble ? r.fp64 : r.fp32;
}

// Route gemm (gemm_plan.h): the GEMMs at gemm_rate, the epilogues at HBM speed; the workspace's
// traffic is counted at HBM speed too, though chunks that stay in the 50 MB L2 may beat it.
inline double gemm_route(const Problem& p, const DeviceRates& r) {
  const double T = double(p.tokens), B = double(p.width), D = double(p.features);
  const double e = double(at::elementSize(p.dtype)), a = double(gemm::acc_bytes(p.dtype));
  const double rate = gemm_rate(p.dtype, r);
  Total total{r};
  switch (p.op) {
    case CudaOp::kForward: {
      const gemm::ForwardPlan plan(p.dtype, p.width);
      const double G = double(plan.logit_cols), chunks = double(gemm::chunks_of(p.tokens, plan.chunk));
      total.step(T * (e * D + a * G), 2 * T * D * G, rate, r.hbm, chunks);
      total.step(T * (a * G + p.bits_bytes * B + e * 2 * B + (p.training ? a * B : 0)), 0, 0, r.hbm, chunks);
      total.step(T * (e * 2 * B + e * D), 2 * T * 2 * B * D, rate, r.hbm, chunks);
      total.step(0, 0, 0, r.hbm, 6);  // the codebook's terms
      break;
    }
    case CudaOp::kBackward: {
      const gemm::BackwardPlan plan(p.dtype, p.width, p.features, /*euclidean=*/false);
      const double G = double(plan.logit_cols), chunks = double(gemm::chunks_of(p.tokens, plan.chunk));
      const double o = plan.pairs ? e : a, parts = double(plan.parts), ps = double(plan.part_stride);
      const double dx_cols = double(plan.dx_parts) * ps;
      const double rows = double(std::min(plan.chunk, p.tokens));
      total.step(rows * double(plan.e_stride) * o, 0, 0, r.hbm, 2);  // E zeroed once, its 1s column
      total.step(T * (e * D + a * G), 2 * T * D * G, rate, r.hbm, chunks);  // U = g.G^T
      if (plan.scaled) total.step(T * (a * G + a * B), 0, 0, r.hbm, 2 * chunks);  // max |r|
      total.step(T * (a * G + a * B + o * (B + dx_cols)), 0, 0, r.hbm, chunks);  // E
      total.step(T * (o * dx_cols + (plan.scaled ? a : e) * D), 2 * T * dx_cols * D, rate, r.hbm, chunks);  // dx
      if (plan.scaled) total.step(T * (a + e) * D, 0, 0, r.hbm, chunks);
      total.step(T * (o * (B + 1) + e * D), 2 * T * (B + 1) * D, rate, r.hbm, 2 * chunks);  // S1
      total.step(T * (o * parts * ps + e * D), 2 * T * parts * ps * D, rate, r.hbm, 3 * chunks);  // S2
      total.step(0, 0, 0, r.hbm, 12);  // the codebook's terms and the gradient's assembly
      break;
    }
    case CudaOp::kDecode:
    case CudaOp::kDecodeBackward: {
      const gemm::ForwardPlan plan(p.dtype, p.width, /*with_logits=*/false);
      const double chunks = double(gemm::chunks_of(p.tokens, plan.chunk));
      const double adds = p.op == CudaOp::kDecodeBackward ? 2 * chunks : 0;
      total.step(T * (B + e * 2 * B), 0, 0, r.hbm, chunks);  // one-hot
      total.step(T * (e * 2 * B + e * D), 2 * T * 2 * B * D, rate, r.hbm, chunks + adds);
      break;
    }
    case CudaOp::kVq: {
      const gemm::VqPlan plan(p.dtype, p.width);
      const double K = B, token_tiles = double(gemm::chunks_of(p.tokens, plan.chunk));
      const double code_tiles = double(gemm::chunks_of(p.width, plan.code_chunk)), tiles = token_tiles * code_tiles;
      total.step(T * K * a + T * e * D * code_tiles + K * e * D * token_tiles, 2 * T * K * D, rate, r.hbm, tiles);
      total.step(T * K * a + K * a * token_tiles, 0, 0, r.hbm, tiles);  // running argmin
      total.step(T * (2 * e * D + 8 + e), 0, 0, r.hbm, 3 * token_tiles);  // distances
      break;
    }
  }
  return total.seconds;
}

// Route cores (the kernels on tile_gemm.cuh): per kernel, the larger of its bytes over HBM and
// its issued instructions over core_ops (counted per multiply-add from the sm_90 SASS, NOTES
// "CUDA"), plus a launch.
namespace cores_cost {

struct Shape {
  double T, B, D, in;  // tokens, bits (or codes), features, input element bytes
  bool fp64, training;
};

inline double padded(double n, double tile) { return std::ceil(n / tile) * tile; }

// The bit tile the kernels pick (launch.cuh with_width) and the token rows of a block tile
// (tile_gemm.cuh TileFor: 256 x 16, 128 x 32, 128 x 64 in float; 128 x 16/32, 64 x 64 in double).
inline double bit_tile(double bits) { return bits <= 16 ? 16 : bits <= 32 ? 32 : 64; }
inline double token_rows(const Shape& s) {
  const double w = bit_tile(s.B);
  return s.fp64 ? (w == 64 ? 64 : 128) : (w == 16 ? 256 : 128);
}

// Issue slots per multiply-add of a rows x cols block-tile product: the fma (a DFMA counts
// fp64_op_cost), the LDS.128 of the micro-tile (float 8 x 8: 4 per 64 FFMA; double 4 x 4: 4 per
// 16 DFMA), and staging each k-slice (an LDG per vector and an STS per element: 1/rows + 1/cols).
inline double per_fma(const Shape& s, const DeviceRates& r, double rows, double cols) {
  return (s.fp64 ? r.fp64_op_cost : 1.0) + (s.fp64 ? 0.25 : 1.0 / 16) + 1.25 * (1 / rows + 1 / cols);
}

// Per pair and feature of the overlapped sum: a select and an add (double: two selects and a
// DADD) and the LDS.128 of the even and odd rows.
inline double per_select_add(const Shape& s, const DeviceRates& r) {
  return s.fp64 ? 2 + r.fp64_op_cost + 0.25 : 2 + 1.0 / 16;
}

inline double kernel(double instructions, double bytes, const DeviceRates& r) {
  return std::max(instructions / r.core_ops, bytes / r.hbm) + r.launch;
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

inline double cores_route(const Problem& p, const DeviceRates& r) {
  const cores_cost::Shape s{double(p.tokens), double(p.width), double(p.features), double(at::elementSize(p.dtype)),
                            p.dtype == at::kDouble, p.training};
  switch (p.op) {
    case CudaOp::kForward: {
      const double convert = p.bits_bytes != 8 ? s.T * s.B * (8 + p.bits_bytes) / r.hbm + r.launch : 0;  // int64 -> bits_dtype
      return cores_cost::forward(s, r) + convert;
    }
    case CudaOp::kBackward:
      return cores_cost::backward(s, r);
    case CudaOp::kDecode:
      return cores_cost::decode(s, r);
    case CudaOp::kDecodeBackward:
      return cores_cost::decode_backward(s, r);
    case CudaOp::kVq:
      return cores_cost::vq(s, r);
  }
  return 0;
}

// Route mma (mma_kernels.cuh): the bf16/fp16 forward and vq in one pass; its other ops are the
// CUDA-core kernels'. Its forward writes int64 bits, converted afterwards for another bits dtype.
inline double mma_route(const Problem& p, const DeviceRates& r) {
  const double T = double(p.tokens), D = double(p.features), W = double(p.width);
  const double in = double(at::elementSize(p.dtype));
  if (p.op == CudaOp::kForward) {
    const double io = T * D * 2 * in + T * W * 8 + (p.training ? T * W * 4 : 0);  // x, y, bits, z
    const double rows = round_up(2 * W, 16);                     // codebook rows, in n-tile pairs
    const double x_reads = std::ceil(W / 64);                    // x streamed once per 64 bits
    const double flops = 2 * T * D * rows * 2;                   // logits + one-hot sum
    const double l2 = 2 * std::ceil(T / 128) * rows * D * in;   // codebook twice per 128 tokens
    const double dram = io + (x_reads - 1) * T * D * in;
    const double convert = p.bits_bytes != 8 ? T * W * (8 + p.bits_bytes) / r.hbm + r.launch : 0;
    return std::max({dram / r.hbm, l2 / r.l2, flops / r.mma_sync}) + convert;
  }
  if (p.op == CudaOp::kVq) {
    const double io = T * D * in + T * (8 + in);
    const double flops = 2 * T * round_up(W, 128) * D;
    // per 128 x 128 tile: x and the codes again from L2; the argmin's ~4 CUDA-core operations per score
    const double l2 = (std::ceil(T / 128) * W + std::ceil(W / 128) * T) * D * in;
    const double epilogue = 4 * T * W / r.core_ops;
    return std::max({io / r.hbm, l2 / r.l2, flops / r.mma_sync, epilogue});
  }
  return cores_route(p, r);
}

}  // namespace cost
}  // namespace bitcodes_ext::cuda
