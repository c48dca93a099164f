// Register-blocked building blocks of the CPU kernels, templated on the accumulation type: the
// projections, dx = r.W, the codebook sums, and the per-token threshold and straight-through
// terms. Their operands are already in the accumulation type; the ops (bitcodes_cpu.cpp,
// decode_cpu.cpp, vq_cpu.cpp) chain them per tile of tokens so that a tile's intermediates stay
// in cache. The overlapped sum's look-ups live in lookup.h.
#pragma once

#include "panels.h"

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace bitcodes_ext::cpu {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// ---- out[t] = A[t] . Wt, with Wt (D x nb) stored bit-contiguous: the logits x.W^T, u = g.W^T. ----
// Broadcast form (one x value times a vector of bits per step): no horizontal sums, so it
// stays efficient for small D.

template <typename acc_t, int MT, int MV>
inline void project_block(const acc_t* A, int64_t lda, const acc_t* Wt, int64_t ldw, int64_t D,
                          acc_t* out, int64_t ldo) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size();
  V acc[MT][MV];
  for (auto& row : acc)
    for (auto& v : row) v = V(acc_t(0));
  for (int64_t d = 0; d < D; ++d) {
    V w[MV];
    for (int v = 0; v < MV; ++v) w[v] = V::loadu(Wt + d * ldw + v * L);
    for (int t = 0; t < MT; ++t) {
      const V a(A[t * lda + d]);
      for (int v = 0; v < MV; ++v) acc[t][v] = at::vec::fmadd(a, w[v], acc[t][v]);
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int v = 0; v < MV; ++v) acc[t][v].store(out + t * ldo + v * L);
}

// All nt token rows against the MV vectors of columns at Wt (bits for the logits and u, codes
// for vq): register blocks of MT tokens, then single tokens for the rest.
template <typename acc_t, int MT, int MV>
inline void project_columns(const acc_t* A, int64_t nt, int64_t lda, const acc_t* Wt, int64_t ldw,
                            int64_t D, acc_t* out, int64_t ldo) {
  int64_t t = 0;
  for (; t + MT <= nt; t += MT) project_block<acc_t, MT, MV>(A + t * lda, lda, Wt, ldw, D, out + t * ldo, ldo);
  for (; t < nt; ++t) project_block<acc_t, 1, MV>(A + t * lda, lda, Wt, ldw, D, out + t * ldo, ldo);
}

// out[t][0, nb) = A[t] . Wt[:, 0, nb); Wt has row stride ldw. nb must be a multiple of the
// vector size (Wt and out are padded with zero columns).
template <typename acc_t>
void project_rows(const acc_t* A, int64_t nt, int64_t lda, const acc_t* Wt, int64_t ldw, int64_t nb, int64_t D,
                  acc_t* out, int64_t ldo) {
  constexpr int64_t L = Vec<acc_t>::size();
  int64_t b = 0;
  // Register blocks of 12 accumulators: 4 tokens x 3 vectors, then 6 x 2, then 12 x 1.
  for (; b + 3 * L <= nb; b += 3 * L) project_columns<acc_t, 4, 3>(A, nt, lda, Wt + b, ldw, D, out + b, ldo);
  if (b + 2 * L <= nb) {
    project_columns<acc_t, 6, 2>(A, nt, lda, Wt + b, ldw, D, out + b, ldo);
    b += 2 * L;
  }
  if (b < nb) project_columns<acc_t, 12, 1>(A, nt, lda, Wt + b, ldw, D, out + b, ldo);
}

// ---- out[t] = sum_i R[t][i] * W[i]: dx = r.W. ----

template <typename acc_t, int MT, int MV, bool kFull>
inline void combine_block(const acc_t* R, int64_t ldr, int64_t nb, const acc_t* W, int64_t ldw,
                          int64_t n_last, acc_t* out, int64_t ldo) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size();
  V acc[MT][MV];
  for (auto& row : acc)
    for (auto& v : row) v = V(acc_t(0));
  for (int64_t i = 0; i < nb; ++i) {
    V w[MV];
    for (int v = 0; v < MV; ++v)
      w[v] = (kFull || v + 1 < MV) ? V::loadu(W + i * ldw + v * L) : V::loadu(W + i * ldw + v * L, n_last);
    for (int t = 0; t < MT; ++t) {
      const V r(R[t * ldr + i]);
      for (int v = 0; v < MV; ++v) acc[t][v] = at::vec::fmadd(r, w[v], acc[t][v]);
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int v = 0; v < MV; ++v) {
      if (kFull || v + 1 < MV) acc[t][v].store(out + t * ldo + v * L);
      else acc[t][v].store(out + t * ldo + v * L, n_last);
    }
}

template <typename acc_t, int MV, bool kFull>
inline void combine_panel(const acc_t* R, int64_t nt, int64_t ldr, int64_t nb, const acc_t* panel,
                          int64_t n_last, acc_t* out, int64_t ldo) {
  int64_t t = 0;
  for (; t + 4 <= nt; t += 4)
    combine_block<acc_t, 4, MV, kFull>(R + t * ldr, ldr, nb, panel, panel_width<acc_t>(), n_last, out + t * ldo, ldo);
  for (; t < nt; ++t)
    combine_block<acc_t, 1, MV, kFull>(R + t * ldr, ldr, nb, panel, panel_width<acc_t>(), n_last, out + t * ldo, ldo);
}

// `panels` is W cut into column panels of panel_width() features, each (nb x width) and
// contiguous, zero past D: a row-major W strides by D between bits, and at D = 512 or 1024 the
// rows a register block reads all fall into the same few L1 sets. Token blocks run inside a
// panel, so it stays in L1 for the whole tile.
template <typename acc_t>
void combine_rows(const acc_t* R, int64_t nt, int64_t ldr, int64_t nb, const acc_t* panels, int64_t D,
                  acc_t* out, int64_t ldo) {
  constexpr int64_t L = Vec<acc_t>::size(), P = panel_width<acc_t>();
  for (int64_t d = 0; d < D; d += P) {
    const acc_t* panel = panels + d / P * nb * P;
    const int64_t width = std::min(P, D - d);
    if (width == P) combine_panel<acc_t, 3, true>(R, nt, ldr, nb, panel, L, out + d, ldo);
    else if (width > 2 * L) combine_panel<acc_t, 3, false>(R, nt, ldr, nb, panel, width - 2 * L, out + d, ldo);
    else if (width > L) combine_panel<acc_t, 2, false>(R, nt, ldr, nb, panel, width - L, out + d, ldo);
    else combine_panel<acc_t, 1, false>(R, nt, ldr, nb, panel, width, out + d, ldo);
  }
}

// ---- S[i] += sum_t C[t][i] * M[t]: the codebook gradient bits^T.g + r^T.x. ----

template <typename acc_t, int MV, bool kFull>
inline void accumulate_block(const acc_t* C, int64_t ldc, int64_t nt, const acc_t* M, int64_t ldm,
                             int64_t n_last, acc_t* S, int64_t lds) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size();
  constexpr int MI = 4;
  V acc[MI][MV];
  for (auto& row : acc)
    for (auto& v : row) v = V(acc_t(0));
  for (int64_t t = 0; t < nt; ++t) {
    V m[MV];
    for (int v = 0; v < MV; ++v)
      m[v] = (kFull || v + 1 < MV) ? V::loadu(M + t * ldm + v * L) : V::loadu(M + t * ldm + v * L, n_last);
    for (int i = 0; i < MI; ++i) {
      const V c(C[t * ldc + i]);
      for (int v = 0; v < MV; ++v) acc[i][v] = at::vec::fmadd(c, m[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MI; ++i)
    for (int v = 0; v < MV; ++v) {
      acc_t* s = S + i * lds + v * L;
      const int64_t n = (kFull || v + 1 < MV) ? L : n_last;
      (V::loadu(s, n) + acc[i][v]).store(s, n);
    }
}

// nb must be a multiple of 4. Each column panel of M is first copied into `panel`
// (nt x panel_width(), zero past D), so that every bit block reads it contiguously from L1.
template <typename acc_t>
void accumulate_outer(const acc_t* C, int64_t nt, int64_t ldc, int64_t nb, const acc_t* M,
                      int64_t D, acc_t* S, acc_t* panel) {
  constexpr int64_t L = Vec<acc_t>::size(), P = panel_width<acc_t>();
  for (int64_t d = 0; d < D; d += P) {
    const int64_t width = std::min(P, D - d);
    // Vector copies: a library copy call per 24-float row took 7.6% of the backward.
    for (int64_t t = 0; t < nt; ++t)
      for (int64_t v = 0; v < P; v += L) {
        const int64_t n = std::clamp<int64_t>(width - v, 0, L);
        (n == L ? Vec<acc_t>::loadu(M + t * D + d + v) : Vec<acc_t>::loadu(M + t * D + d + v, n)).store(panel + t * P + v);
      }
    for (int64_t i = 0; i < nb; i += 4) {
      acc_t* s = S + i * D + d;
      if (width == P) accumulate_block<acc_t, 3, true>(C + i, ldc, nt, panel, P, L, s, D);
      else if (width > 2 * L) accumulate_block<acc_t, 3, false>(C + i, ldc, nt, panel, P, width - 2 * L, s, D);
      else if (width > L) accumulate_block<acc_t, 2, false>(C + i, ldc, nt, panel, P, width - L, s, D);
      else accumulate_block<acc_t, 1, false>(C + i, ldc, nt, panel, P, width, s, D);
    }
  }
}

// sum[d] += sum_t M[t][d]
template <typename acc_t>
void accumulate_columns(const acc_t* M, int64_t nt, int64_t D, acc_t* sum) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size();
  for (int64_t t = 0; t < nt; ++t) {
    int64_t d = 0;
    for (; d + L <= D; d += L) (V::loadu(sum + d) + V::loadu(M + t * D + d)).store(sum + d);
    if (d < D) (V::loadu(sum + d, D - d) + V::loadu(M + t * D + d, D - d)).store(sum + d, D - d);
  }
}

// ---- bits = [logit + bias + noise > 0] for one token (ties and NaN give 0). ----
// logits and bias are padded to whole vectors; noise, bits and z hold num_bits values. Also
// writes the token's look-up codes (group_bits 1 or 4; a vector holds whole groups of 4).
// bits_t is the dtype the caller asked for (int64, uint8 or bool).
template <typename acc_t, typename bits_t>
inline void threshold_token(const acc_t* logits, const acc_t* bias, const acc_t* noise, int64_t num_bits,
                            int64_t group_bits, bits_t* bits, uint8_t* codes, acc_t* z) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size();
  static_assert(L % 4 == 0, "a vector must hold whole groups of 4 bits");
  for (int64_t i = 0; i < num_bits; i += L) {
    const int64_t n = std::min(L, num_bits - i);
    V zz = V::loadu(logits + i) + V::loadu(bias + i);
    if (noise) zz = zz + V::loadu(noise + i, n);
    if (z) zz.store(z + i, n);
    // zero_mask() sets a bit for each lane that compared false (NaN compares false).
    const uint32_t positive = ~uint32_t((zz > V(acc_t(0))).zero_mask()) & ((uint32_t(1) << n) - 1);
    for (int64_t j = 0; j < n; ++j) bits[i + j] = static_cast<bits_t>((positive >> j) & 1);
    if (group_bits == 1) {
      for (int64_t j = 0; j < n; ++j) codes[i + j] = (positive >> j) & 1;
    } else {
      for (int64_t q = 0; 4 * q < n; ++q) codes[i / 4 + q] = (positive >> (4 * q)) & 0xF;
    }
  }
}

// ---- The straight-through terms of one token: p = sigmoid(z / tau), r = p(1 - p)u / tau,
// bit = [z > 0] (NaN gives 0), r_sum += r. z holds num_bits values; u, r, bits and r_sum are
// padded to whole vectors, and r and bits are 0 in the padding. ----
template <typename acc_t>
inline void straight_through_token(const acc_t* z, int64_t num_bits, int64_t padded, const acc_t* u, acc_t tau,
                                   acc_t* r, acc_t* bits, acc_t* r_sum) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size();
  const V zero(acc_t(0)), one(acc_t(1)), vtau(tau);
  for (int64_t i = 0; i < padded; i += L) {
    const int64_t n = std::clamp<int64_t>(num_bits - i, 0, L);
    const V zz = V::loadu(z + i, n);
    const V p = one / (one + (zz / vtau).neg().exp());
    V rr = p * (one - p) * V::loadu(u + i) / vtau;
    V bit = V::blendv(zero, one, zz > zero);
    if (n < L) {  // the padding, whatever u holds there
      rr = V::set(zero, rr, n);
      bit = V::set(zero, bit, n);
    }
    rr.store(r + i);
    bit.store(bits + i);
    (V::loadu(r_sum + i) + rr).store(r_sum + i);
  }
}

}  // namespace bitcodes_ext::cpu
