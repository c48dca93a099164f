// The overlapped sum y = sum_i c[2i + bit_i] of one tile of tokens: each y is the float32 (or
// float64) sum of the chosen codebook rows, in pair order, in partial sums of 64 pairs. Shared
// by the fused forward (bits from its shared-memory mask) and by decode (bits from global
// memory, staged 64 pairs at a time), so both give the same y bit for bit.
#pragma once

#include "tile_gemm.cuh"
#include "vector_io.cuh"

namespace bitcodes_ext::cuda {

// Pairs summed into a partial sum before it joins the total: the float32 rounding error then
// grows with 64 + B / 64 terms rather than with B (a whole number of staged slices).
constexpr int64_t kPartialPairs = 64;

// acc[m][n] += sum over pairs q in [p_begin, p_end) of c[2q + bit(m, q)][d0 + col n], kStep / 2
// pairs staged at a time: a select and an add per pair, not two FMAs of a one-hot product, and
// only the chosen row counts, as in the CPU look-up tables. The bits: bit q - mask_p0 of tile
// row r is bit (q - mask_p0) % 32 of mask[r * words + (q - mask_p0) / 32] (shared memory, set
// before the call; every thread of the block calls it).
template <class T>
__device__ __forceinline__ void select_sum(const uint32_t* mask, int words, int64_t mask_p0,
                                           const typename T::acc* codebook, int64_t B, int64_t D, int64_t d0,
                                           int64_t p_begin, int64_t p_end, TileStage<T>& s, typename T::Acc& acc) {
  using acc_t = typename T::acc;
  constexpr int kPairs = T::kStep / 2;
  static_assert(32 % kPairs == 0 && kPartialPairs % kPairs == 0, "a slice's bits lie in one mask word");
  SliceLoader<T, T::kCols, false, Matrix<acc_t, Cast<acc_t>>> rows(matrix<acc_t>(codebook, 2 * B, D), d0);
  pipeline<T>(
      2 * p_begin, 2 * p_end, [&](int64_t k0) { rows.load(k0, 2 * p_end); }, [&](int buf) { rows.store(s.b[buf]); },
      [&](int buf, int64_t k0) {
        const int64_t q0 = k0 / 2 - mask_p0;
        uint32_t bits[T::kMR];
#pragma unroll
        for (int m = 0; m < T::kMR; ++m) bits[m] = mask[T::row(m) * words + q0 / 32] >> (q0 % 32);
#pragma unroll
        for (int q = 0; q < kPairs; ++q) {
          acc_t even[T::kMC], odd[T::kMC];
#pragma unroll
          for (int g = 0; g < T::kColGroups; ++g) {
            const auto e = load_vec<acc_t, T::kVec>(&s.b[buf][2 * q][T::col(g * T::kVec)]);
            const auto o = load_vec<acc_t, T::kVec>(&s.b[buf][2 * q + 1][T::col(g * T::kVec)]);
#pragma unroll
            for (int v = 0; v < T::kVec; ++v) {
              even[g * T::kVec + v] = e.v[v];
              odd[g * T::kVec + v] = o.v[v];
            }
          }
#pragma unroll
          for (int m = 0; m < T::kMR; ++m) {
            const bool bit = (bits[m] >> q) & 1u;  // past p_end both staged rows are 0
#pragma unroll
            for (int n = 0; n < T::kMC; ++n) acc[m][n] += bit ? odd[n] : even[n];
          }
        }
      });
}

// Bits packed 32 to a word, (N, words) row-major: the split forward's output.
struct PackedBits {
  const uint32_t* words;
  int64_t N, per_row;
  __device__ __forceinline__ uint32_t word(int64_t t, int64_t w) const {
    return t < N && w < per_row ? words[t * per_row + w] : 0u;
  }
};

// 0/1 bytes, (N, B) row-major: decode's input. Word w of token t packs bits 32w .. 32w + 31.
struct ByteBits {
  const uint8_t* bits;
  int64_t N, B;
  __device__ __forceinline__ uint32_t word(int64_t t, int64_t w) const {
    if (t >= N) return 0u;
    const uint8_t* row = bits + t * B;
    const int64_t first = 32 * w;
    uint32_t out = 0;
    if (first + 32 <= B && B % 16 == 0 && aligned16(bits)) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const auto v = load_vec<uint8_t, 16>(row + first + 16 * h);
#pragma unroll
        for (int e = 0; e < 16; ++e) out |= uint32_t(v.v[e] != 0) << (16 * h + e);
      }
      return out;
    }
    for (int e = 0; e < 32 && first + e < B; ++e) out |= uint32_t(row[first + e] != 0) << e;
    return out;
  }
};

// decode: y for one tile of tokens x one tile of features, grid (token tiles, feature tiles).
// The bits of the block's tokens are staged 64 pairs (two words a token) at a time.
template <typename scalar_t, class T, class Bits>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks)
    decode_kernel(Bits bits, int64_t N, int64_t B, int64_t D, const typename T::acc* codebook, scalar_t* y) {
  constexpr int kWords = kPartialPairs / 32;
  __shared__ TileStage<T> stage;
  __shared__ uint32_t mask[T::kRows * kWords];
  const int64_t row0 = int64_t(blockIdx.x) * T::kRows, d0 = int64_t(blockIdx.y) * T::kCols;
  typename T::Acc acc, partial;
  zero<T>(acc);
  for (int64_t p0 = 0; p0 < B; p0 += kPartialPairs) {
    // The previous group's select_sum ended on a barrier, and this one's first barrier comes
    // before any thread reads the mask.
    for (int e = threadIdx.x; e < T::kRows * kWords; e += T::kThreads)
      mask[e] = bits.word(row0 + e / kWords, p0 / 32 + e % kWords);
    const int64_t p_end = min(B, p0 + kPartialPairs);
    if (p0 == 0) {  // 0 + partial is partial: the first group sums straight into acc
      select_sum<T>(mask, kWords, p0, codebook, B, D, d0, p0, p_end, stage, acc);
      continue;
    }
    zero<T>(partial);
    select_sum<T>(mask, kWords, p0, codebook, B, D, d0, p0, p_end, stage, partial);
#pragma unroll
    for (int m = 0; m < T::kMR; ++m)
#pragma unroll
      for (int n = 0; n < T::kMC; ++n) acc[m][n] += partial[m][n];
  }
  store_tile<T>(acc, row0, N, d0, D, y);
}

}  // namespace bitcodes_ext::cuda
