// What every token of a call shares, derived once from the codebook in the accumulation type:
// the pair differences W (and W transposed) and the euclidean bias, padded to whole vectors of
// bits. (The overlapped sum's look-up tables are built in lookup.h.)
#pragma once

#include "../codebook_terms.h"

#include <ATen/ATen.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>

namespace bitcodes_ext::cpu {

// Bits are padded to whole vectors of floats (and so of doubles) for the register blocks;
// the padded rows of W are zero.
inline int64_t round_up_to_vectors(int64_t num_bits) {
  constexpr int64_t L = at::vec::Vectorized<float>::size();
  return (num_bits + L - 1) / L * L;
}

struct PreparedCodebook {
  int64_t num_bits, padded_bits, features;
  at::Tensor codebook;  // (2B, D) in the accumulation type
  at::Tensor w;         // (padded_bits, D): c[2i+1] - c[2i]
  at::Tensor wt;        // (D, padded_bits): W transposed, for the broadcast-form projections
  at::Tensor bias;      // (padded_bits): -(|c[2i+1]|^2 - |c[2i]|^2) / 2 for euclidean, else 0
};

inline PreparedCodebook prepare_codebook(const at::Tensor& codebook, at::ScalarType acc,
                                         bool euclidean, bool need_w) {
  PreparedCodebook p;
  p.codebook = codebook.to(acc).contiguous();
  p.num_bits = codebook.size(0) / 2;
  p.padded_bits = round_up_to_vectors(p.num_bits);
  p.features = codebook.size(1);
  if (!need_w) return p;
  p.w = at::zeros({p.padded_bits, p.features}, p.codebook.options());
  p.w.narrow(0, 0, p.num_bits).copy_(pair_differences(p.codebook));
  p.wt = p.w.t().contiguous();
  p.bias = at::zeros({p.padded_bits}, p.codebook.options());
  if (euclidean) p.bias.narrow(0, 0, p.num_bits).copy_(euclidean_bias(p.codebook));
  return p;
}

}  // namespace bitcodes_ext::cpu
