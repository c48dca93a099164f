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
  // The CUDA-core kernels as built on main (issue 11's reading of their SASS): tile_gemm's 8
  // scalar shared loads per 16 FFMA cap it near 30 TFLOP/s, and scalar global loads with
  // bounds branches near 0.4 TB/s. Their branch restates these as it changes the kernels.
  double cores_fp32 = 30e12;
  double cores_fp64 = 15e12;
  double cores_hbm = 0.4e12;
  // Route mma's kernels (mma_kernels.cuh): mma.sync without wgmma reaches well under Hopper's
  // dense peak; their codebook and x tiles come again from L2; the argmin runs on the CUDA cores.
  double l2 = 7.0e12;          // bytes/s from L2 to the SMs
  double mma_sync = 400e12;    // FLOP/s of dense bf16/fp16 mma.sync
  double core_ops = 33e12;     // scalar operations/s over all CUDA-core lanes (the FP32 issue rate)
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

// The GEMM rate of route 1 for the input dtype.
inline double gemm_rate(at::ScalarType dtype, const DeviceRates& r) {
  if (gemm::uses_pairs(dtype)) return r.tensor;
  return dtype == at::kDouble ? r.fp64 : r.fp32;
}

// Route 1 (gemm_plan.h): the GEMMs at gemm_rate, the epilogues at HBM speed; the workspace's
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

// The CUDA-core kernels on main (bitcodes_kernels.cuh, codebook_sums.cuh, overlapped_sum.cuh,
// vq_cuda.cu): 64 x 64 tiles, so the forward, straight-through and codebook-sum kernels compute
// whole tiles of 64 bits; the overlapped sum is a select and an add per pair (8 pairs a slice).
inline double cores_route(const Problem& p, const DeviceRates& r) {
  const double T = double(p.tokens), B = double(p.width), D = double(p.features);
  const double e = double(at::elementSize(p.dtype)), a = double(gemm::acc_bytes(p.dtype));
  const double rate = p.dtype == at::kDouble ? r.cores_fp64 : r.cores_fp32, bw = r.cores_hbm;
  const double B64 = round_up(B, 64), B16 = round_up(B, 16), B8 = round_up(B, 8), D64 = round_up(D, 64);
  Total total{r};
  switch (p.op) {
    case CudaOp::kForward:
      total.step(T * (2 * e * D + 8 * B + (p.training ? a * B : 0)), 2 * T * D * B64 + 2 * T * D64 * B8, rate, bw, 6);
      if (p.bits_bytes != 8) total.step(T * B * (8 + p.bits_bytes), 0, 0, r.hbm, 1);  // int64 -> bits_dtype
      break;
    case CudaOp::kBackward:
      total.step(T * (e * D + 2 * a * B), 2 * T * D * B64, rate, bw, 1);  // r
      total.step(T * (a * B + e * D), 2 * T * B16 * D64, rate, bw, 1);  // dx
      total.step(T * (2 * a * B + 2 * e * D), 4 * T * B64 * D64, rate, bw, 1);  // codebook sums
      total.step(T * (e * D + a * B), 0, 0, r.hbm, 12);  // sum_t g, sum_t r, the assembly
      break;
    case CudaOp::kDecode:
      total.step(T * (B + e * D), 2 * T * D64 * B8, rate, bw, 3);
      break;
    case CudaOp::kDecodeBackward:
      total.step(T * (B + e * D), 2 * T * B64 * D64, rate, bw, 2);
      total.step(T * e * D, 0, 0, r.hbm, 8);
      break;
    case CudaOp::kVq:
      total.step(T * (e * D + 8 + e), 2 * T * round_up(B, 64) * D, rate, bw, 3);
      break;
  }
  return total.seconds;
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
