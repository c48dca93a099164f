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

// Bits are read `group_bits` at a time, and table[g][m] holds the sum of the codes that group g's bit pattern m selects (bit j of m
// is bit g * group_bits + j).
//
// The tables are cut along the features into slices of `width` features, each stored
// contiguously ([slice][g][m][width], the last one padded with zeros), so that a tile of tokens
// reads one slice at a time from L2 instead of striding over pages of a (rows x D) table. A row's
// offset inside a slice is the same in every slice, so a tile computes each token's row offsets
// once for all slices.
struct LookupTables {
  at::Tensor data;
  int64_t group_bits, groups, entries, features, width;
  void* base;  // data's pointer, read once rather than per slice

  int64_t slices() const { return (features + width - 1) / width; }
  int64_t row_offset(int64_t g, int64_t m) const { return (g * entries + m) * width; }
  template <typename acc_t>
  const acc_t* slice(int64_t s) const {
    return static_cast<const acc_t*>(base) + s * groups * entries * width;
  }
};

// A table slice stays in L2 while a tile of tokens streams through it. Slices of 24 KB (L1)
// were slower at 16384 tokens, twice (benchmarks/NOTES.md, rows 17 and 20).
constexpr int64_t kLookupSliceBytes = 128 * 1024;

// Four bits per group cut the adds per token by four; each group's table then holds 16 rows
// (4 * num_bits rows in all, against 2 * num_bits codes), so it pays off once a call has a few
// dozen tokens.
inline LookupTables make_lookup_tables(const at::Tensor& codebook_acc, int64_t num_tokens) {
  const int64_t B = codebook_acc.size(0) / 2, D = codebook_acc.size(1);
  const int64_t K = num_tokens < 64 ? 1 : 4, G = (B + K - 1) / K, E = int64_t(1) << K;
  const int64_t elem = int64_t(codebook_acc.element_size());
  // Slices of whole vectors of this build (AVX2 or AVX-512): lookup_block loads whole vectors.
  const int64_t lanes = int64_t(Vec<float>::size() * sizeof(float)) / elem;
  const int64_t whole_d = (D + lanes - 1) / lanes * lanes;
  const int64_t width = std::min(whole_d, std::max(lanes, kLookupSliceBytes / (G * E * elem) / lanes * lanes));
  const int64_t slices = (D + width - 1) / width;
  auto data = at::empty({slices * G * E * width}, codebook_acc.options());
  LookupTables lut{data, K, G, E, D, width, data.mutable_data_ptr()};
  AT_DISPATCH_FLOATING_TYPES(codebook_acc.scalar_type(), "bitcodes_lookup_tables", [&] {
    const scalar_t* c = codebook_acc.const_data_ptr<scalar_t>();
    at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) {
        const int64_t bits_here = std::min(K, B - g * K);
        for (int64_t s = 0; s < slices; ++s) {
          const int64_t d0 = s * width, w = std::min(width, D - d0);
          for (int64_t m = 0; m < E; ++m) {
            scalar_t* out = const_cast<scalar_t*>(lut.slice<scalar_t>(s)) + lut.row_offset(g, m);
            std::fill(out, out + width, scalar_t(0));
            for (int64_t j = 0; j < bits_here; ++j) {
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

// MV vectors of one token's slice: out[v] = sum_g slice[offsets[g] + v * L]. Slices hold whole
// vectors (zero-padded), so only the store of the slice's last vector may be partial (n_last).
template <typename acc_t, int MV>
inline void lookup_block(const acc_t* slice, const int64_t* offsets, int64_t G, int64_t n_last,
                         acc_t* out) {
  using V = Vec<acc_t>;
  constexpr int64_t L = V::size();
  // Even and odd groups go to separate accumulators: twice the independent add chains.
  V even[MV], odd[MV];
  for (int v = 0; v < MV; ++v) {
    even[v] = V::loadu(slice + offsets[0] + v * L);
    odd[v] = V(acc_t(0));
  }
  int64_t g = 1;
  for (; g + 1 < G; g += 2) {
    const acc_t* a = slice + offsets[g];
    const acc_t* b = slice + offsets[g + 1];
    for (int v = 0; v < MV; ++v) {
      odd[v] = odd[v] + V::loadu(a + v * L);
      even[v] = even[v] + V::loadu(b + v * L);
    }
  }
  if (g < G)
    for (int v = 0; v < MV; ++v) odd[v] = odd[v] + V::loadu(slice + offsets[g] + v * L);
  for (int v = 0; v < MV; ++v) {
    const V sum = even[v] + odd[v];
    if (v + 1 < MV || n_last == L) sum.store(out + v * L);
    else sum.store(out + v * L, n_last);
  }
}

// One token's first n outputs of a table slice; `offsets` are the token's G row offsets into it.
// The slice holds whole vectors past n, so every block loads whole vectors.
template <typename acc_t>
inline void lookup_slice(const acc_t* slice, const int64_t* offsets, int64_t G, int64_t n, acc_t* out) {
  constexpr int64_t L = Vec<acc_t>::size();
  int64_t d = 0;
  for (; d + 4 * L < n; d += 4 * L) lookup_block<acc_t, 4>(slice + d, offsets, G, L, out + d);
  const int64_t rest = n - d, vectors = (rest + L - 1) / L, n_last = rest - (vectors - 1) * L;
  if (vectors == 4) lookup_block<acc_t, 4>(slice + d, offsets, G, n_last, out + d);
  else if (vectors == 3) lookup_block<acc_t, 3>(slice + d, offsets, G, n_last, out + d);
  else if (vectors == 2) lookup_block<acc_t, 2>(slice + d, offsets, G, n_last, out + d);
  else if (vectors == 1) lookup_block<acc_t, 1>(slice + d, offsets, G, n_last, out + d);
}

// y[t] = sum_g tables[g][codes[t][g]] for the nt tokens of a tile; `buffer` holds nt * D
// accumulators when y is not in the accumulation type; `offsets` holds nt * groups row offsets.
template <typename acc_t, typename scalar_t>
void lookup_tile(const LookupTables& lut, const uint8_t* codes, int64_t nt, scalar_t* y, acc_t* buffer,
                 std::vector<int64_t>& offsets) {
  const int64_t G = lut.groups, D = lut.features, width = lut.width;
  offsets.resize(nt * G);
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t g = 0; g < G; ++g) offsets[t * G + g] = lut.row_offset(g, codes[t * G + g]);
  acc_t* out = acc_destination(y, buffer);
  for (int64_t s = 0; s < lut.slices(); ++s) {
    const int64_t d0 = s * width;
    const acc_t* slice = lut.slice<acc_t>(s);
    for (int64_t t = 0; t < nt; ++t)
      lookup_slice(slice, offsets.data() + t * G, G, std::min(width, D - d0), out + t * D + d0);
  }
  flush_to_output(out, y, nt * D);
}

}  // namespace bitcodes_ext::cpu
