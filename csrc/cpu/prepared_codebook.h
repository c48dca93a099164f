// What every token of a call shares, derived once from the codebook in the accumulation type:
// the pair differences W, the euclidean bias, and the look-up tables of the overlapped sum.
#pragma once

#include "../codebook_terms.h"
#include "microkernels.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>

namespace bitcodes_ext::cpu {

// Bits are padded to whole vectors of floats (and so of doubles) for the register blocks;
// the padded rows of W are zero.
inline int64_t padded_bits(int64_t num_bits) {
  constexpr int64_t L = at::vec::Vectorized<float>::size();
  return (num_bits + L - 1) / L * L;
}

// (rows, D) -> (ceil(D / P), rows, P), zero past D; P = panel_width() of its dtype.
inline at::Tensor column_panels(const at::Tensor& m) {
  int64_t P = 0;
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "bitcodes_panel_width", [&] { P = panel_width<scalar_t>(); });
  const int64_t rows = m.size(0), D = m.size(1), panels = (D + P - 1) / P;
  auto padded = at::zeros({rows, panels * P}, m.options());
  padded.narrow(1, 0, D).copy_(m);
  return padded.view({rows, panels, P}).permute({1, 0, 2}).contiguous();
}

struct PreparedCodebook {
  int64_t num_bits, padded, features;
  at::Tensor codebook;  // (2B, D) in the accumulation type
  at::Tensor w;         // (padded, D): c[2i+1] - c[2i]
  at::Tensor wt;        // (D, padded): W transposed, for the broadcast-form projections
  at::Tensor bias;      // (padded): -(|c[2i+1]|^2 - |c[2i]|^2) / 2 for euclidean, else 0
};

inline PreparedCodebook prepare_codebook(const at::Tensor& codebook, at::ScalarType acc,
                                         bool euclidean, bool need_w) {
  PreparedCodebook p;
  p.codebook = codebook.to(acc).contiguous();
  p.num_bits = codebook.size(0) / 2;
  p.padded = padded_bits(p.num_bits);
  p.features = codebook.size(1);
  if (!need_w) return p;
  p.w = at::zeros({p.padded, p.features}, p.codebook.options());
  p.w.narrow(0, 0, p.num_bits).copy_(pair_differences(p.codebook));
  p.wt = p.w.t().contiguous();
  p.bias = at::zeros({p.padded}, p.codebook.options());
  if (euclidean) p.bias.narrow(0, 0, p.num_bits).copy_(euclidean_bias(p.codebook));
  return p;
}

}  // namespace bitcodes_ext::cpu
