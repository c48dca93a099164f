// The codebook gradient's token sums (S = bits^T g + r^T x, sum_t g, rsum), summed per chunk
// of tokens without atomics; ../codebook_terms.h assembles the gradient from them.
// In eval and in decode, r = 0.
#pragma once

#include "../codebook_terms.h"
#include "output_memory.h"
#include "prepared_codebook.h"
#include "tiles.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace bitcodes_ext::cpu {

// One chunk's partial sums, laid out in a row of `partials`: S (padded_bits x D), sum_t g (D), rsum (padded_bits).
inline int64_t partial_row_size(int64_t padded_bits, int64_t features) {
  return padded_bits * features + features + padded_bits;
}

template <typename acc_t>
struct PartialSums {
  acc_t *S, *grad_sum, *r_sum;
  PartialSums(acc_t* row, int64_t padded_bits, int64_t features)
      : S(row), grad_sum(row + padded_bits * features), r_sum(row + padded_bits * features + features) {}
};

// Zeroes one chunk's partial sums, then calls body(sums, t0, nt) for each of its tiles in order.
template <typename acc_t, typename Body>
inline void for_each_chunk_tile(int64_t chunk, int64_t chunks, int64_t num_tokens, acc_t* partials,
                                int64_t padded_bits, int64_t features, Body&& body) {
  const int64_t row = partial_row_size(padded_bits, features), tiles = num_tiles(num_tokens);
  std::fill(partials + chunk * row, partials + (chunk + 1) * row, acc_t(0));
  PartialSums<acc_t> sums(partials + chunk * row, padded_bits, features);
  for (int64_t tile = chunk_first_tile(chunk, chunks, tiles); tile < chunk_first_tile(chunk + 1, chunks, tiles);
       ++tile) {
    const int64_t t0 = tile * kTileTokens;
    body(sums, t0, std::min(kTileTokens, num_tokens - t0));
  }
}

// One row of partial sums per chunk of tokens, from the output cache (up to 64 MB a call). Each
// chunk zeroes its own row in the kernel; without tokens no kernel runs, so zero here.
inline at::Tensor make_partials(int64_t num_tokens, const PreparedCodebook& cb, const at::TensorOptions& acc) {
  const int64_t row = partial_row_size(cb.padded_bits, cb.features);
  const int64_t chunks = num_chunks(num_tokens, row * int64_t(acc.dtype().itemsize()));
  return num_tokens > 0 ? empty_output({chunks, row}, acc) : at::zeros({chunks, row}, acc);
}

// Adds the chunk rows in chunk order, so the result does not depend on the thread count.
inline at::Tensor finish_codebook_grad(const at::Tensor& partials, const PreparedCodebook& cb,
                                       bool euclidean, at::ScalarType out_dtype) {
  const int64_t chunks = partials.size(0), row = partials.size(1);
  auto total = at::empty({row}, partials.options());
  AT_DISPATCH_FLOATING_TYPES(partials.scalar_type(), "bitcodes_finish_codebook_grad", [&] {
    const scalar_t* src = partials.const_data_ptr<scalar_t>();
    scalar_t* dst = total.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, row, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) dst[k] = src[k];
      for (int64_t c = 1; c < chunks; ++c)
        for (int64_t k = begin; k < end; ++k) dst[k] += src[c * row + k];
    });
  });
  const int64_t B = cb.num_bits, D = cb.features;
  const auto S = total.narrow(0, 0, cb.padded_bits * D).view({cb.padded_bits, D}).narrow(0, 0, B);
  const auto grad_sum = total.narrow(0, cb.padded_bits * D, D);
  const auto r_sum = total.narrow(0, cb.padded_bits * D + D, B);
  return assemble_codebook_grad(S, grad_sum, r_sum, cb.codebook, euclidean, out_dtype);
}

}  // namespace bitcodes_ext::cpu
