// How the CPU ops cut tokens into tiles and chunks, and move tiles in and out of the
// accumulation type.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace bitcodes_ext::cpu {

// Tokens per tile: a multiple of every token count of the register blocks (4, 6 and 12 in the
// projections, 4 in combine_rows), small enough that a tile of x and its logits stay in L1/L2.
constexpr int64_t kTileTokens = 48;

inline int64_t num_tiles(int64_t num_tokens) { return (num_tokens + kTileTokens - 1) / kTileTokens; }

// The codebook gradient is summed in `num_chunks` partial sums over contiguous token ranges.
// Their number depends on the shapes alone, never on the thread count, so the summation
// order, and the result bit for bit, is the same on every run and every machine.
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kChunkBudgetBytes = int64_t(64) << 20;

inline int64_t num_chunks(int64_t num_tokens, int64_t partial_bytes) {
  const int64_t by_memory = std::max<int64_t>(1, kChunkBudgetBytes / std::max<int64_t>(1, partial_bytes));
  return std::max<int64_t>(1, std::min({num_tiles(num_tokens), kMaxChunks, by_memory}));
}

inline int64_t chunk_first_tile(int64_t chunk, int64_t chunks, int64_t tiles) {
  return chunk * tiles / chunks;
}

// A tile in the accumulation type: the input itself when it already is, else a converted copy.
template <typename scalar_t, typename acc_t>
const acc_t* tile_as_acc(const scalar_t* src, int64_t n, acc_t* buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return src;
  } else {
    at::vec::convert(src, buffer, n);
    return buffer;
  }
}

// Where to accumulate an output tile: in place when the output has the accumulation type.
template <typename acc_t, typename scalar_t>
acc_t* acc_destination(scalar_t* dst, acc_t* buffer) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return dst;
  } else {
    return buffer;
  }
}

template <typename acc_t, typename scalar_t>
void flush_to_output(const acc_t* buffer, scalar_t* dst, int64_t n) {
  if constexpr (!std::is_same_v<scalar_t, acc_t>) at::vec::convert(buffer, dst, n);
}

// Scratch space for a tile when a conversion is needed, none otherwise.
template <typename scalar_t, typename acc_t>
int64_t conversion_buffer_size(int64_t n) {
  return std::is_same_v<scalar_t, acc_t> ? 0 : n;
}

}  // namespace bitcodes_ext::cpu
