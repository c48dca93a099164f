// The one building block of the CUDA kernels: a kRows x kCols block tile of a product
//   acc[row][col] += sum_k A(row, k) * B(col, k)
// on the CUDA cores, in the accumulation type (float, or double for float64 inputs). The tile
// is a compile-time shape (Tile), so a kernel's bit tile is 16, 32 or 64 columns wide, as the
// problem needs (TileFor). The operands are row-major matrices read along k or along i
// (Matrix + SliceLoader), so one routine serves the logits (x.W^T), dx = r.W, the codebook sums
// (bits^T g + r^T x) and vq; the overlapped sum reuses its staging and pipeline.
//
// Every output is one fma chain over k in increasing order, whatever the tile shape, the
// staging or the vector width: results are bitwise reproducible and do not depend on the tile
// picked for a problem. No TF32 and no tensor cores: plain FFMA / DFMA.
//
// Per thread, kMR x kMC outputs, as groups of kVec consecutive rows and columns (4 floats or 2
// doubles: one 128-bit shared load, LDS.128), the groups kRows / kRowGroups (kCols / kColGroups)
// apart, so a warp's loads of one k read contiguous 16-byte words or broadcast one.
// The reduction is staged in slices of kStep, double-buffered in shared memory: while a slice
// is multiplied, each thread's global loads of the next one (16-byte vectors where the data
// are aligned and in bounds, bounds-checked scalars at the edges) are in flight in registers.
#pragma once

#include "vector_io.cuh"

#include <cstdint>

namespace bitcodes_ext::cuda {

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename acc_t, int kRows_, int kCols_, int kMR_, int kMC_, int kStep_>
struct Tile {
  using acc = acc_t;
  static constexpr int kRows = kRows_, kCols = kCols_;  // outputs of a block
  static constexpr int kMR = kMR_, kMC = kMC_;          // outputs of a thread
  static constexpr int kStep = kStep_;                  // reduction slice staged at a time
  static constexpr int kVec = kVecOf<acc_t>;            // 4 floats or 2 doubles: one LDS.128
  static constexpr int kRowGroups = kMR / kVec, kColGroups = kMC / kVec;
  static constexpr int kRowLanes = kRows / kMR, kColLanes = kCols / kMC;
  static constexpr int kThreads = kRowLanes * kColLanes;
  static constexpr int kPad = kVec;  // staged rows stay 16-byte aligned
  // Blocks per SM that __launch_bounds__ reserves registers for: at least 12 warps per SM, and
  // so at most 168 registers a thread of the 64K per SM (sm_80, sm_90): an 8 x 8 float micro-tile,
  // its fragments and a prefetched slice.
  static constexpr int kMinBlocks = (384 + kThreads - 1) / kThreads;
  static_assert(kMR % kVec == 0 && kMC % kVec == 0 && kRows % kMR == 0 && kCols % kMC == 0, "whole groups");
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");
  static_assert(32 % kColLanes == 0, "the column lanes of a row lie in one warp (vq reduces them by shuffles)");
  static_assert(kStep % 8 == 0, "a slice is whole 16-byte vectors of bf16/fp16 and whole pairs of codebook rows");
  using Acc = acc_t[kMR][kMC];

  // Thread (row lane, column lane): the column lane runs fastest, so the threads of a row are
  // consecutive lanes of one warp.
  __device__ static int row_lane() { return threadIdx.x / kColLanes; }
  __device__ static int col_lane() { return threadIdx.x % kColLanes; }
  // The tile row of the thread's output row m < kMR, and the tile column of its column n < kMC.
  __device__ static int row(int m) { return (m / kVec) * (kRows / kRowGroups) + row_lane() * kVec + m % kVec; }
  __device__ static int col(int n) { return (n / kVec) * (kCols / kColGroups) + col_lane() * kVec + n % kVec; }
};

// The tiles of the kernels whose columns are bits (forward, straight-through), by column
// width: 16, 32 or 64 (pick_width). float: 8 x 8 per thread (64 FFMA per four LDS.128);
// double: 4 x 4 (16 DFMA per four LDS.128, within the register budget of 2 registers per value).
// The same shapes serve dx (columns: features), vq (columns: codes) and the overlapped sum.
template <typename acc_t, int kWidth>
struct TileFor;
template <>
struct TileFor<float, 16> : Tile<float, 256, 16, 8, 8, 8> {};
template <>
struct TileFor<float, 32> : Tile<float, 128, 32, 8, 8, 8> {};
template <>
struct TileFor<float, 64> : Tile<float, 128, 64, 8, 8, 16> {};
template <>
struct TileFor<double, 16> : Tile<double, 128, 16, 4, 4, 8> {};
template <>
struct TileFor<double, 32> : Tile<double, 128, 32, 4, 4, 8> {};
template <>
struct TileFor<double, 64> : Tile<double, 64, 64, 4, 4, 8> {};

// decode's tiles (rows: tokens, columns: features): a total and a partial sum per output
// (overlapped_sum.cuh), so float takes 8 x 4 per thread to stay within the register budget.
template <typename acc_t>
struct DecodeTileFor;
template <>
struct DecodeTileFor<float> : Tile<float, 128, 64, 8, 4, 16> {};
template <>
struct DecodeTileFor<double> : Tile<double, 64, 64, 4, 4, 8> {};

// The codebook sums' tiles: rows are bits (16, 32 or 64 of them), columns features.
template <typename acc_t, int kWidth>
struct SumsTileFor;
template <>
struct SumsTileFor<float, 16> : Tile<float, 16, 256, 8, 8, 8> {};
template <>
struct SumsTileFor<float, 32> : Tile<float, 32, 128, 8, 8, 8> {};
template <>
struct SumsTileFor<float, 64> : Tile<float, 64, 128, 8, 8, 16> {};
template <>
struct SumsTileFor<double, 16> : Tile<double, 16, 128, 4, 4, 8> {};
template <>
struct SumsTileFor<double, 32> : Tile<double, 32, 128, 4, 4, 8> {};
template <>
struct SumsTileFor<double, 64> : Tile<double, 64, 64, 4, 4, 8> {};

// Two slices of each operand: one being multiplied, one being filled.
template <class T>
struct alignas(16) TileStage {
  typename T::acc a[2][T::kStep][T::kRows + T::kPad];  // [buffer][k][row]
  typename T::acc b[2][T::kStep][T::kCols + T::kPad];  // [buffer][k][col]
};

template <class T>
__device__ __forceinline__ void zero(typename T::Acc& acc) {
#pragma unroll
  for (int m = 0; m < T::kMR; ++m)
#pragma unroll
    for (int n = 0; n < T::kMC; ++n) acc[m][n] = typename T::acc(0);
}

// Element conversions of an operand to the accumulation type. Each maps 0 to 0, which is what
// a loader stores past the edges of its matrix.
template <typename acc_t>
struct Cast {
  template <typename S>
  __device__ __forceinline__ acc_t operator()(S v) const {
    return static_cast<acc_t>(v);
  }
};
// bit = [z > 0] from training margins (a NaN gives 0, as the forward's threshold does).
template <typename acc_t>
struct Positive {
  __device__ __forceinline__ acc_t operator()(acc_t z) const { return z > acc_t(0) ? acc_t(1) : acc_t(0); }
};
// bit = [b != 0] from 0/1 bytes.
template <typename acc_t>
struct Nonzero {
  __device__ __forceinline__ acc_t operator()(uint8_t b) const { return b != 0 ? acc_t(1) : acc_t(0); }
};

// A row-major rows x cols matrix as an operand.
template <typename scalar_t, typename Convert>
struct Matrix {
  using scalar = scalar_t;
  const scalar_t* data;
  int64_t rows, cols;
  Convert convert;
};

template <typename acc_t, typename scalar_t>
__host__ __device__ Matrix<scalar_t, Cast<acc_t>> matrix(const scalar_t* data, int64_t rows, int64_t cols) {
  return {data, rows, cols, Cast<acc_t>{}};
}

// Stages kExtent rows (or columns) x kStep of a Matrix, starting at row (or column) i0, into
// dst[k - k0][i]: kAlongK, the operand's element (i, k) is M[i0 + i][k] (k runs along memory:
// x, W, g, r as token x bit); else it is M[k][i0 + i] (i runs along memory: W as bit x
// feature, codebook rows, and every operand of the codebook sums, whose k is the token).
// Consecutive threads read consecutive 16-byte vectors of memory either way. load() issues the
// global reads of a slice into registers: whole vectors when the slice lies inside the matrix
// and its rows are aligned (every slice but the edges), else element by element with bounds
// checks; store() converts them and writes them to shared memory. Elements at or past k_end,
// or outside the matrix, are 0. Slices along k start at multiples of the vector length.
template <class T, int kExtent, bool kAlongK, class M>
struct SliceLoader {
  using acc_t = typename T::acc;
  using scalar_t = typename M::scalar;
  static constexpr int kV = kVecOf<scalar_t>;
  static constexpr int kPerRow = kAlongK ? T::kStep / kV : kExtent / kV;  // vectors per row of the slice
  static constexpr int kVectors = kExtent * T::kStep / kV;
  static constexpr int kPerThread = (kVectors + T::kThreads - 1) / T::kThreads;
  static constexpr int kRowsPerPass = T::kThreads / kPerRow;  // slice rows the block covers per vector a thread
  static_assert((kAlongK ? T::kStep : kExtent) % kV == 0, "a slice row is whole vectors");
  static_assert(T::kThreads % kPerRow == 0, "every thread keeps its position in a row from vector to vector");
  static_assert(kAlongK || kV % T::kVec == 0, "staged along i in whole 16-byte shared stores");

  M m;
  int64_t i0;
  bool vectors;      // rows start 16-byte aligned, so whole vectors can be loaded
  int64_t first;     // element offset of the thread's first vector in slice 0 (k0 = 0)
  int64_t pass;      // element offset from one of the thread's vectors to the next
  Vec<scalar_t, kV> regs[kPerThread];

  __device__ SliceLoader(const M& m_, int64_t i0_) : m(m_), i0(i0_), vectors(aligned16(m_.data) && m_.cols % kV == 0) {
    int i, k;
    position(threadIdx.x, i, k);
    first = kAlongK ? (i0 + i) * m.cols + k : k * m.cols + i0 + i;
    pass = kRowsPerPass * m.cols;  // kAlongK: kRowsPerPass matrix rows down; else kRowsPerPass k down
  }

  // The vector's first element: tile row/column i and slice offset k.
  __device__ static void position(int e, int& i, int& k) {
    if constexpr (kAlongK) {
      i = e / kPerRow;
      k = (e % kPerRow) * kV;
    } else {
      k = e / kPerRow;
      i = (e % kPerRow) * kV;
    }
  }

  __device__ __forceinline__ void load(int64_t k0, int64_t k_end) {
    const int64_t extent_i = kAlongK ? m.rows : m.cols;
    const int64_t extent_k = min(k_end, kAlongK ? m.cols : m.rows);
    if (vectors && i0 + kExtent <= extent_i && k0 + T::kStep <= extent_k) {  // the same for the whole block
      const scalar_t* p = m.data + first + (kAlongK ? k0 : k0 * m.cols);
#pragma unroll
      for (int n = 0; n < kPerThread; ++n) {
        if (kVectors % T::kThreads != 0 && threadIdx.x + n * T::kThreads >= kVectors) break;
        regs[n] = load_vec<scalar_t, kV>(p + n * pass);
      }
      return;
    }
#pragma unroll
    for (int n = 0; n < kPerThread; ++n) {
      const int e = threadIdx.x + n * T::kThreads;
      if (kVectors % T::kThreads != 0 && e >= kVectors) break;
      int i, k;
      position(e, i, k);
      const int64_t gi = i0 + i, gk = k0 + k;
#pragma unroll
      for (int v = 0; v < kV; ++v) {
        const int64_t ei = kAlongK ? gi : gi + v, ek = kAlongK ? gk + v : gk;
        regs[n].v[v] = ei < extent_i && ek < extent_k ? m.data[kAlongK ? ei * m.cols + ek : ek * m.cols + ei] : scalar_t(0);
      }
    }
  }

  __device__ __forceinline__ void store(acc_t (&dst)[T::kStep][kExtent + T::kPad]) const {
#pragma unroll
    for (int n = 0; n < kPerThread; ++n) {
      const int e = threadIdx.x + n * T::kThreads;
      if (kVectors % T::kThreads != 0 && e >= kVectors) break;
      int i, k;
      position(e, i, k);
      if constexpr (kAlongK) {
#pragma unroll
        for (int v = 0; v < kV; ++v) dst[k + v][i] = m.convert(regs[n].v[v]);
      } else {
#pragma unroll
        for (int c = 0; c < kV; c += T::kVec) {
          Vec<acc_t, T::kVec> out;
#pragma unroll
          for (int v = 0; v < T::kVec; ++v) out.v[v] = m.convert(regs[n].v[c + v]);
          store_vec<acc_t, T::kVec>(&dst[k][i + c], out);
        }
      }
    }
  }
};

// The double-buffered slice loop: load(k0) issues the global reads of a slice, store(buf)
// writes them to buffer buf, compute(buf, k0) uses buffer buf. One barrier per slice: slice s
// is computed from one buffer while slice s + 1 goes into the other. Every thread of the block
// must call it (it synchronises); the stage is free again when it returns.
template <class T, class Load, class Store, class Compute>
__device__ __forceinline__ void pipeline(int64_t k_begin, int64_t k_end, const Load& load, const Store& store,
                                         const Compute& compute) {
  if (k_begin >= k_end) return;
  load(k_begin);
  store(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = k_begin; k0 < k_end; k0 += T::kStep) {
    const bool more = k0 + T::kStep < k_end;
    if (more) load(k0 + T::kStep);
    compute(buf, k0);
    if (more) store(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }
}

// acc += the product of one staged slice: per k, kRowGroups + kColGroups LDS.128 and
// kMR * kMC fma.
template <class T>
__device__ __forceinline__ void multiply_slice(const typename T::acc (&a)[T::kStep][T::kRows + T::kPad],
                                               const typename T::acc (&b)[T::kStep][T::kCols + T::kPad],
                                               typename T::Acc& acc) {
  using acc_t = typename T::acc;
#pragma unroll
  for (int k = 0; k < T::kStep; ++k) {
    acc_t av[T::kMR], bv[T::kMC];
#pragma unroll
    for (int g = 0; g < T::kRowGroups; ++g) {
      const auto v = load_vec<acc_t, T::kVec>(&a[k][T::row(g * T::kVec)]);
#pragma unroll
      for (int e = 0; e < T::kVec; ++e) av[g * T::kVec + e] = v.v[e];
    }
#pragma unroll
    for (int g = 0; g < T::kColGroups; ++g) {
      const auto v = load_vec<acc_t, T::kVec>(&b[k][T::col(g * T::kVec)]);
#pragma unroll
      for (int e = 0; e < T::kVec; ++e) bv[g * T::kVec + e] = v.v[e];
    }
#pragma unroll
    for (int m = 0; m < T::kMR; ++m)
#pragma unroll
      for (int n = 0; n < T::kMC; ++n) acc[m][n] = fma(av[m], bv[n], acc[m][n]);
  }
}

// acc += sum over k in [k_begin, k_end) of A(row, k) B(col, k) for the tile at rows a_i0 of A
// and columns b_i0 of B. kAAlongK / kBAlongK: as SliceLoader's kAlongK.
template <class T, bool kAAlongK, bool kBAlongK, class MA, class MB>
__device__ __forceinline__ void tile_gemm(const MA& a, int64_t a_i0, const MB& b, int64_t b_i0, int64_t k_begin,
                                          int64_t k_end, TileStage<T>& s, typename T::Acc& acc) {
  SliceLoader<T, T::kRows, kAAlongK, MA> la(a, a_i0);
  SliceLoader<T, T::kCols, kBAlongK, MB> lb(b, b_i0);
  pipeline<T>(
      k_begin, k_end,
      [&](int64_t k0) {
        la.load(k0, k_end);
        lb.load(k0, k_end);
      },
      [&](int buf) {
        la.store(s.a[buf]);
        lb.store(s.b[buf]);
      },
      [&](int buf, int64_t) { multiply_slice<T>(s.a[buf], s.b[buf], acc); });
}

// Visits the thread's outputs inside a rows x cols matrix whose tile starts at (row0, col0),
// by runs of kVec consecutive columns: f(m, g, row, col, count) for output row m, column group
// g (outputs acc[m][g * kVec + e], e < count) and the run's first matrix row and column.
template <class T, typename F>
__device__ __forceinline__ void for_each_run(int64_t row0, int64_t rows, int64_t col0, int64_t cols, const F& f) {
#pragma unroll
  for (int m = 0; m < T::kMR; ++m) {
    const int64_t row = row0 + T::row(m);
    if (row >= rows) continue;
#pragma unroll
    for (int g = 0; g < T::kColGroups; ++g) {
      const int64_t col = col0 + T::col(g * T::kVec);
      if (col >= cols) continue;
      f(m, g, row, col, static_cast<int>(min(int64_t(T::kVec), cols - col)));
    }
  }
}

// Writes the thread's outputs inside a rows x cols row-major matrix `out` (the tile at (row0,
// col0)), converted to out's type, in vectors where the rows are aligned.
template <class T, typename out_t>
__device__ __forceinline__ void store_tile(const typename T::Acc& acc, int64_t row0, int64_t rows, int64_t col0,
                                           int64_t cols, out_t* out) {
  const bool vector = runs_aligned<out_t, T::kVec>(out, cols);
  for_each_run<T>(row0, rows, col0, cols, [&](int m, int g, int64_t row, int64_t col, int count) {
    out_t v[T::kVec];
#pragma unroll
    for (int e = 0; e < T::kVec; ++e) v[e] = static_cast<out_t>(acc[m][g * T::kVec + e]);
    store_run(out + row * cols + col, v, count, vector);
  });
}

}  // namespace bitcodes_ext::cuda
