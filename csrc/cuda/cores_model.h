// The cost model of the `cores` route (the kernels built on tile_gemm.cuh): the predicted time of
// an op from the bytes its kernels move through DRAM and the instructions they issue, each at the
// device's rate, the larger of the two per kernel, plus a fixed cost per launch. The instruction
// counts per token follow the sm_90 SASS (benchmarks/NOTES.md, "CUDA", derives them and tabulates
// the predictions); the device constants are an H100 SXM's, to be corrected here, in one place,
// from the first GPU measurement. Plain C++, so it can be evaluated anywhere.
#pragma once

#include <algorithm>
#include <cstdint>

namespace bitcodes_ext::cuda::cores_model {

struct Device {
  double sms = 132;
  double clock_hz = 1.755e9;          // sustained under FP32 load (boost 1.98 GHz)
  double issue_per_sm_clock = 128;    // 4 schedulers x 32 lanes: FFMA, FADD, FSEL, LDS, integer alike
  double fp64_op_cost = 2;            // DFMA / DADD: the FP64 pipe does 64 lanes per SM per clock
  double dram_bytes_per_s = 3.0e12;   // HBM3, what a copy reaches of the 3.35 TB/s peak
  double launch_s = 4e-6;             // per kernel: launch, ramp-up and tail
};

// What an op computes, as the model needs it (route.h's Problem, with dtype sizes).
struct Shape {
  int64_t tokens, bits, features;
  int input_bytes;  // x, y, g, dx: 2 (bf16 / fp16), 4 or 8
  bool fp64;        // accumulates (and stages) in double
  bool training;
};

inline double padded(double n, double tile) { return static_cast<double>(static_cast<int64_t>((n + tile - 1) / tile)) * tile; }

// The bit tile the kernels pick (launch.cuh with_width).
inline double bit_tile(int64_t bits) { return bits <= 16 ? 16 : bits <= 32 ? 32 : 64; }

// Instructions per multiply-add of a block-tile product: the fma (a DFMA counts twice), the
// LDS.128 of the micro-tile (float 8 x 8: 4 per 64 FFMA; double 4 x 4: 4 per 16 DFMA), and the
// staging of each slice (an LDG per vector and an STS per element, 1/rows + 1/cols per fma).
inline double per_fma(const Shape& s, const Device& d, double rows, double cols) {
  const double fma = s.fp64 ? d.fp64_op_cost : 1.0, lds = s.fp64 ? 0.25 : 1.0 / 16;
  return fma + lds + 1.25 * (1 / rows + 1 / cols);
}

// Instructions per pair and feature of the overlapped sum: a select and an add (64-bit: two
// selects and a DADD) and the LDS.128 of the even and odd rows.
inline double per_select_add(const Shape& s, const Device& d) {
  return s.fp64 ? 2 + d.fp64_op_cost + 0.25 : 2 + 1.0 / 16;
}

struct Cost {
  double instructions = 0, bytes = 0;  // whole op
  int launches = 0;
};

inline double seconds(const Cost& c, const Device& d) {
  const double issue = c.instructions / (d.sms * d.issue_per_sm_clock * d.clock_hz);
  return std::max(issue, c.bytes / d.dram_bytes_per_s) + c.launches * d.launch_s;
}

// The forward: fused (one kernel) where bits <= 64 and the token tiles fill the SMs, else the
// bits kernel over (token, bit) tiles and decode over (token, feature) tiles.
inline double forward_seconds(const Shape& s, const Device& d = {}) {
  const double T = s.tokens, B = s.bits, D = s.features, x = s.input_bytes, acc = s.fp64 ? 8 : 4;
  const double w = bit_tile(s.bits), rows = s.fp64 ? (w == 64 ? 64 : 128) : (w == 16 ? 256 : 128);
  const bool fused = s.bits <= 64 && T / rows >= d.sms;
  Cost logits;
  logits.instructions = T * padded(B, w) * D * per_fma(s, d, rows, w);
  logits.instructions += T * B * (12 + (s.training ? (s.fp64 ? 60 : 25) : 0));  // threshold, Philox
  logits.bytes = T * (D * x + 8 * B + (s.training ? acc * B : 0));
  logits.launches = 1;
  const double feature_tile = fused ? w : 64, pairs = padded(B, 8);
  Cost sum;
  sum.instructions = T * pairs * padded(D, feature_tile) * per_select_add(s, d);
  sum.bytes = T * D * x + (fused ? 0 : T * 2 * 4 * padded(B, 32) / 32);  // y (+ the packed bits out and in)
  sum.launches = fused ? 0 : 1;
  if (fused) {
    Cost all{logits.instructions + sum.instructions, logits.bytes + sum.bytes, 1};
    return seconds(all, d);
  }
  return seconds(logits, d) + seconds(sum, d);
}

// The training backward: r (u = g.W^T), dx = r.W, the codebook sums, and ATen's sums of g and r.
inline double backward_seconds(const Shape& s, const Device& d = {}) {
  const double T = s.tokens, B = s.bits, D = s.features, x = s.input_bytes, acc = s.fp64 ? 8 : 4;
  const double w = bit_tile(s.bits), rows = s.fp64 ? (w == 64 ? 64 : 128) : (w == 16 ? 256 : 128);
  Cost r{T * padded(B, w) * D * per_fma(s, d, rows, w) + T * B * 20, T * (D * x + 2 * acc * B), 1};
  Cost dx{T * padded(D, 64) * padded(B, s.fp64 ? 8 : 16) * per_fma(s, d, s.fp64 ? 64 : 128, 64), T * (acc * B + D * x), 1};
  const double sums_rows = w, sums_cols = s.fp64 ? (w == 64 ? 64 : 128) : (w == 16 ? 256 : 128);
  Cost sums{2 * T * padded(B, w) * padded(D, sums_cols) * per_fma(s, d, sums_rows, sums_cols),
            T * (2 * acc * B + 2 * D * x), 1};
  Cost reductions{0, T * (D * x + acc * B), 2};
  return seconds(r, d) + seconds(dx, d) + seconds(sums, d) + seconds(reductions, d);
}

// decode (from_bits): uint8 bits in, y out, over (token, feature) tiles of 64 features.
inline double decode_seconds(const Shape& s, const Device& d = {}) {
  const double T = s.tokens, B = s.bits, D = s.features;
  return seconds({T * padded(B, 8) * padded(D, 64) * per_select_add(s, d), T * (B + D * s.input_bytes), 1}, d);
}

// decode_backward: the codebook sums of bits^T g alone.
inline double decode_backward_seconds(const Shape& s, const Device& d = {}) {
  const double T = s.tokens, B = s.bits, D = s.features, w = bit_tile(s.bits);
  const double cols = s.fp64 ? (w == 64 ? 64 : 128) : (w == 16 ? 256 : 128);
  return seconds({T * padded(B, w) * padded(D, cols) * per_fma(s, d, w, cols), T * (B + 2 * D * s.input_bytes), 2}, d);
}

// vq over `bits` = num_codes codes: the scores as a (token x code) product in tiles of 64 codes.
inline double vq_seconds(const Shape& s, const Device& d = {}) {
  const double T = s.tokens, K = s.bits, D = s.features, rows = s.fp64 ? 64 : 128;
  return seconds({T * padded(K, 64) * D * per_fma(s, d, rows, 64), T * (D * s.input_bytes + 8 + s.input_bytes), 1}, d);
}

}  // namespace bitcodes_ext::cuda::cores_model
