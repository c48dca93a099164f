// The overlapped sum y = sum_i c[2i + bit_i], computed as table look-ups.
#pragma once

#include "microkernels.h"
#include "tiles.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace bitcodes_ext::cpu {

// The overlapped sum y = sum_i c[2i + bit_i] as look-ups: bits are read `group_bits` at a time,
// and table[g][m] holds the sum of the codes that group g's bit pattern m selects (bit j of m
// is bit g * group_bits + j).
//
// The tables are cut along the features into slices that fit in L1, and each slice is stored
// contiguously ([slice][g][m][width]), so a tile of tokens reads one slice at a time from L1
// instead of striding over pages of a (rows x D) table.
struct LookupTables {
  at::Tensor data;
  int64_t group_bits, groups, entries, features, slice;
  void* base;  // data's pointer, read once: row() runs per token and group

  int64_t slice_width(int64_t d0) const { return std::min(slice, features - d0); }
  // Row m of group g in the slice that starts at feature d0.
  template <typename acc_t>
  const acc_t* row(int64_t d0, int64_t g, int64_t m) const {
    const int64_t w = slice_width(d0);
    return static_cast<const acc_t*>(base) + d0 * groups * entries + (g * entries + m) * w;
  }
};

// A table slice stays in L2 while a tile of tokens streams through it.
constexpr int64_t kLookupSliceBytes = 128 * 1024;

// Four bits per group cut the adds per token by four; the table then holds 16 * num_bits / 4
// rows per group, so it pays off once a call has a few dozen tokens.
inline LookupTables make_lookup_tables(const at::Tensor& codebook_acc, int64_t num_tokens) {
  const int64_t B = codebook_acc.size(0) / 2, D = codebook_acc.size(1);
  const int64_t K = num_tokens < 64 ? 1 : 4, G = (B + K - 1) / K, E = int64_t(1) << K;
  const int64_t elem = int64_t(codebook_acc.element_size());
  const int64_t lanes = 32 / elem;  // one AVX2 vector; a multiple of it keeps the loads aligned
  const int64_t slice = std::max(lanes, kLookupSliceBytes / (G * E * elem) / lanes * lanes);
  auto data = at::empty({G * E * D}, codebook_acc.options());
  LookupTables lut{data, K, G, E, D, slice, data.mutable_data_ptr()};
  AT_DISPATCH_FLOATING_TYPES(codebook_acc.scalar_type(), "bitcodes_lookup_tables", [&] {
    const scalar_t* c = codebook_acc.const_data_ptr<scalar_t>();
    at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) {
        const int64_t width = std::min(K, B - g * K);
        for (int64_t m = 0; m < E; ++m) {
          for (int64_t d0 = 0; d0 < D; d0 += slice) {
            scalar_t* out = const_cast<scalar_t*>(lut.row<scalar_t>(d0, g, m));
            const int64_t w = lut.slice_width(d0);
            for (int64_t d = 0; d < w; ++d) out[d] = 0;
            for (int64_t j = 0; j < width; ++j) {
              const scalar_t* code = c + (2 * (g * K + j) + ((m >> j) & 1)) * D + d0;
              for (int64_t d = 0; d < w; ++d) out[d] += code[d];
            }
          }
        }
      }
    });
  });
  return lut;
}

// Packs one token's bits (0/1 bytes) into its group codes.
inline void pack_codes(const uint8_t* bits, int64_t num_bits, const LookupTables& lut, uint8_t* codes) {
  if (lut.group_bits == 1) {
    std::copy(bits, bits + num_bits, codes);
    return;
  }
  // Four 0/1 bytes b0..b3 read as a little-endian word w: w * 0x01020408 puts b_j at bit 24 + j
  // with no carries, so the top byte is b0 + 2 b1 + 4 b2 + 8 b3.
  const int64_t full = num_bits / 4;
  for (int64_t g = 0; g < full; ++g) {
    uint32_t word;
    std::memcpy(&word, bits + 4 * g, 4);
    codes[g] = uint8_t((word * 0x01020408u) >> 24);
  }
  if (full < lut.groups) {
    uint8_t code = 0;
    for (int64_t j = 0; 4 * full + j < num_bits; ++j) code |= uint8_t(bits[4 * full + j] << j);
    codes[full] = code;
  }
}

// y[t] = sum_g tables[g][codes[t][g]] for the nt tokens of a tile; `buffer` holds nt * D
// accumulators when y is not in the accumulation type; `entry` holds nt * groups indices.
template <typename acc_t, typename scalar_t>
void lookup_tile(const LookupTables& lut, const uint8_t* codes, int64_t nt, scalar_t* y, acc_t* buffer,
                 std::vector<int64_t>& entry, std::vector<const acc_t*>& rows) {
  const int64_t G = lut.groups, E = lut.entries, D = lut.features;
  rows.resize(G);
  entry.resize(nt * G);
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t g = 0; g < G; ++g) entry[t * G + g] = g * E + codes[t * G + g];
  acc_t* out = acc_destination(y, buffer);
  for (int64_t d0 = 0; d0 < D; d0 += lut.slice) {
    const int64_t w = lut.slice_width(d0);
    const acc_t* slice = lut.row<acc_t>(d0, 0, 0);
    for (int64_t t = 0; t < nt; ++t) {
      for (int64_t g = 0; g < G; ++g) rows[g] = slice + entry[t * G + g] * w;
      lookup_sum(rows.data(), G, w, out + t * D + d0);
    }
  }
  flush_to_output(out, y, nt * D);
}

}  // namespace bitcodes_ext::cpu
