// The building blocks of route `mma` (bf16/fp16 on the tensor cores, float accumulation): a
// block of 8 warps owns 128 tokens, 16 per warp (one m16 tile), and streams its operands
// through shared memory in slices staged by cp.async one slice ahead (two stages).
//   logits_pass:         acc = x . C^T for 128 rows of C (codebook rows or vq codes), all features
//   overlapped_sum_pass: y = one-hot(bits) . C over the 2B codebook rows, the one-hot operand
//                        rebuilt in registers from each lane's own bit mask
// bf16 x bf16 and fp16 x fp16 products are exact in float, so both are float-accurate; the
// one-hot product is exact term by term.
#pragma once

#include "mma.cuh"
#include "tile_gemm.cuh"

#include <cstdint>

namespace bitcodes_ext::cuda {

constexpr int kMmaWarps = 8;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kMmaTokens = 16 * kMmaWarps;  // tokens per block
constexpr int kMmaRows = 128;               // rows of C per logits pass: 16 n-tiles of 8
constexpr int kMmaSliceK = 32;              // features per staged slice of a logits pass
constexpr int kMmaSumRows = 32;             // codebook rows per staged slice of the overlapped sum
constexpr int kMmaSumCols = 64;             // features of y per overlapped-sum pass: 8 n-tiles

// Two stages; in each, a logits pass keeps an x slice (128 x 32) then a C slice (128 x 32), and
// the overlapped sum a codebook slice (32 x 64). Raw 16-bit storage: cp.async writes it and
// ldmatrix reads it, nothing else.
struct alignas(128) MmaStage {
  uint16_t h[2][(kMmaTokens + kMmaRows) * kMmaSliceK];
};

__device__ __forceinline__ int lane_id() { return threadIdx.x % 32; }
__device__ __forceinline__ int warp_id() { return threadIdx.x / 32; }

// Element offset of 16-byte chunk `chunk` of row `row` in a row-major tile of kChunks chunks per
// row. The chunk index is XORed with bits of the row so that the 8 rows one ldmatrix matrix reads
// (8 consecutive rows from a multiple of 8, same chunk) fall in 8 different 16-byte bank groups.
template <int kChunks>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  static_assert(kChunks == 4 || kChunks == 8, "tiles of 32 or 64 16-bit elements per row");
  const int flip = kChunks == 8 ? (row & 7) : ((row >> 1) & 3);
  return (row * kChunks + (chunk ^ flip)) * 8;
}

// Issues the cp.async copies of rows [r0, r0 + kRows) and features [f0, f0 + 8 kChunks) of the
// row-major (rows, D) matrix `src` into `tile`, zeros outside the matrix. D % 8 == 0 and `src` is
// 16-byte aligned, so every 16-byte chunk is inside or outside as a whole.
template <int kRows, int kChunks, typename scalar_t>
__device__ __forceinline__ void stage_async(uint16_t* tile, const scalar_t* src, int64_t rows, int64_t D,
                                            int64_t r0, int64_t f0) {
  static_assert(kRows * kChunks % kMmaThreads == 0, "whole copies per thread");
#pragma unroll
  for (int e = threadIdx.x; e < kRows * kChunks; e += kMmaThreads) {
    const int r = e / kChunks, c = e % kChunks;
    const int64_t row = r0 + r, col = f0 + 8 * c;
    const bool inside = row < rows && col < D;
    cp_async_cg16(tile + swizzled<kChunks>(r, c), inside ? src + row * D + col : src, inside);
  }
}

// acc[j] += the 16 x 8 tile j of x[row0 + 16 warp ..] . C[c0 + 8 j ..]^T over all D features,
// for the rows of C in [c0, min(c_rows, c0 + 128)). Rows past N or c_rows contribute zeros.
// Every thread of the block calls it (it synchronises); it returns with the stages free.
template <typename scalar_t>
__device__ void logits_pass(const scalar_t* x, int64_t N, int64_t row0, const scalar_t* c, int64_t c_rows,
                            int64_t c0, int64_t D, MmaStage& s, float (&acc)[16][4]) {
  const int warp = warp_id(), lane = lane_id();
  const int64_t pairs = min(int64_t(kMmaRows / 16), ceil_div(c_rows - c0, 16));  // n-tile pairs in use
  const int64_t slices = ceil_div(D, kMmaSliceK);
  auto issue = [&](int64_t slice) {
    uint16_t* stage = s.h[slice & 1];
    stage_async<kMmaTokens, 4>(stage, x, N, D, row0, slice * kMmaSliceK);
    stage_async<kMmaRows, 4>(stage + kMmaTokens * kMmaSliceK, c, c_rows, D, c0, slice * kMmaSliceK);
  };
  issue(0);
  cp_async_commit();
  for (int64_t slice = 0; slice < slices; ++slice) {
    if (slice + 1 < slices) issue(slice + 1);
    cp_async_commit();  // possibly empty, so that wait_group<1> always means "slice landed"
    cp_async_wait<1>();
    __syncthreads();
    const uint16_t* xs = s.h[slice & 1];
    const uint16_t* cs = xs + kMmaTokens * kMmaSliceK;
#pragma unroll
    for (int kk = 0; kk < kMmaSliceK / 16; ++kk) {
      if (slice * kMmaSliceK + 16 * kk >= D) break;  // only zeros left in this slice
      // A: lanes 0-15 address rows 0-15 at k 0-7, lanes 16-31 the same rows at k 8-15, so the
      // four matrices are a[0..3] of the documented A fragment.
      uint32_t a[4];
      ldmatrix_x4(a, xs + swizzled<4>(16 * warp + lane % 16, 2 * kk + lane / 16));
#pragma unroll
      for (int p = 0; p < kMmaRows / 16; ++p) {
        if (p >= pairs) break;
        // B = C^T for n-tiles 2p and 2p + 1: matrices (rows 16p+0..7, k 0-7), (same rows, k 8-15),
        // (rows 16p+8..15, k 0-7), (k 8-15); a row of C is a column of B, as the col layout wants.
        uint32_t b[4];
        ldmatrix_x4(b, cs + swizzled<4>(16 * p + lane % 8 + 8 * (lane / 16), 2 * kk + (lane / 8) % 2));
        const uint32_t lo[2] = {b[0], b[1]}, hi[2] = {b[2], b[3]};
        mma_m16n8k16<scalar_t>(acc[2 * p], a, lo);
        mma_m16n8k16<scalar_t>(acc[2 * p + 1], a, hi);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
}

// The one-hot A fragment of k step `ks` (codebook rows 16 ks .. 16 ks + 15, pairs 8 ks .. 8 ks + 7)
// from this lane's mask: bit 4 (ks % 8) + r of word ks / 8 is the bit of a[r]'s pair, which is
// pair 8 ks + t (+ 4 for r >= 2) of token row group (+ 8 for odd r). A pair's two elements are
// (even, odd) = (1, 0) for bit 0 and (0, 1) for bit 1; pairs past the last one meet the zero rows
// that stage_async fills past the codebook.
template <typename scalar_t>
__device__ __forceinline__ void one_hot_fragment(const uint32_t* mask, int64_t ks, uint32_t (&a)[4]) {
  const uint32_t one = one_bits<scalar_t>();
  const uint32_t nibble = (mask[ks / 8] >> (4 * (ks % 8))) & 0xfu;
#pragma unroll
  for (int r = 0; r < 4; ++r) a[r] = (nibble >> r) & 1u ? one << 16 : one;
}

// y[row0 + 16 warp ..] = sum over the B pairs i of C[2i + bit_i] for this warp's 16 tokens, from
// the lanes' masks (one_hot_fragment), in passes of 64 features. Every thread calls it.
template <typename scalar_t>
__device__ void overlapped_sum_pass(const uint32_t* mask, const scalar_t* c, int64_t B, int64_t D, int64_t N,
                                    int64_t row0, MmaStage& s, scalar_t* y) {
  const int warp = warp_id(), lane = lane_id(), group = lane / 4, t = lane % 4;
  const int64_t rows = 2 * B, slices = ceil_div(rows, kMmaSumRows);
  for (int64_t d0 = 0; d0 < D; d0 += kMmaSumCols) {
    const int64_t pairs = min(int64_t(kMmaSumCols / 16), ceil_div(D - d0, 16));  // n-tile pairs in use
    float acc[kMmaSumCols / 8][4] = {};
    auto issue = [&](int64_t slice) { stage_async<kMmaSumRows, 8>(s.h[slice & 1], c, rows, D, slice * kMmaSumRows, d0); };
    issue(0);
    cp_async_commit();
    for (int64_t slice = 0; slice < slices; ++slice) {
      if (slice + 1 < slices) issue(slice + 1);
      cp_async_commit();
      cp_async_wait<1>();
      __syncthreads();
      const uint16_t* cs = s.h[slice & 1];
#pragma unroll
      for (int kk = 0; kk < kMmaSumRows / 16; ++kk) {
        const int64_t ks = slice * (kMmaSumRows / 16) + kk;
        if (16 * ks >= rows) break;  // past the last codebook row
        uint32_t a[4];
        one_hot_fragment<scalar_t>(mask, ks, a);
#pragma unroll
        for (int q = 0; q < kMmaSumCols / 16; ++q) {
          if (q >= pairs) break;
          // B = C (k = codebook row, n = feature), transposed on load: matrices (k 0-7, features
          // 16q+0..7), (k 8-15, same features), (k 0-7, features 16q+8..15), (k 8-15, ...).
          uint32_t b[4];
          ldmatrix_x4_trans(b, cs + swizzled<8>(16 * kk + lane % 8 + 8 * ((lane / 8) % 2), 2 * q + lane / 16));
          const uint32_t lo[2] = {b[0], b[1]}, hi[2] = {b[2], b[3]};
          mma_m16n8k16<scalar_t>(acc[2 * q], a, lo);
          mma_m16n8k16<scalar_t>(acc[2 * q + 1], a, hi);
        }
      }
      __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < kMmaSumCols / 8; ++j) {
      const int64_t d = d0 + 8 * j + 2 * t;
      if (d >= D) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t token = row0 + 16 * warp + group + 8 * h;
        if (token >= N) continue;
        const scalar_t pair[2] = {static_cast<scalar_t>(acc[j][2 * h]), static_cast<scalar_t>(acc[j][2 * h + 1])};
        *reinterpret_cast<uint32_t*>(y + token * D + d) =
            uint32_t(pair[0].x) | (uint32_t(pair[1].x) << 16);  // d is even and D % 8 == 0: 4-byte aligned
      }
    }
  }
}

}  // namespace bitcodes_ext::cuda
