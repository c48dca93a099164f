// The one building block of the CUDA kernels: a 64 x 64 block tile of a product
//   acc[row][col] += sum_k A(row, k) * B(col, k)
// on the CUDA cores, in the accumulation type (float, or double for float64 inputs). The
// operands come from loader functors, so one routine serves the logits (x.W^T), the
// dx = r.W, the codebook sums (bits^T g + r^T x) and vq (the overlapped sum has its own loop).
// The summation order is fixed, so every result is bitwise reproducible.
#pragma once

#include <cstdint>

namespace bitcodes_ext::cuda {

constexpr int kTile = 64;      // rows and columns of a block tile
constexpr int kStep = 16;      // slice of the reduction staged in shared memory at a time
constexpr int kThreads = 256;  // 16 x 16 threads, each owning a 4 x 4 micro-tile
constexpr int kMicro = 4;
constexpr int kLanes = kTile / kMicro;  // 16

// Thread (row_lane, col_lane) owns rows row_lane + 16a and columns col_lane + 16b (a, b < 4):
// strided, so that a warp's shared-memory reads hit distinct banks or broadcast, and 16
// consecutive threads write 16 consecutive columns of a row.
__device__ __forceinline__ int row_lane() { return threadIdx.x / kLanes; }
__device__ __forceinline__ int col_lane() { return threadIdx.x % kLanes; }

template <typename acc_t>
struct TileStage {
  acc_t a[kStep][kTile + 1];  // A slice, [k][row]
  acc_t b[kStep][kTile + 1];  // B slice, [k][col]
};

template <typename acc_t>
using Micro = acc_t[kMicro][kMicro];

template <typename acc_t>
__device__ __forceinline__ void zero(Micro<acc_t>& acc) {
#pragma unroll
  for (int a = 0; a < kMicro; ++a)
#pragma unroll
    for (int b = 0; b < kMicro; ++b) acc[a][b] = acc_t(0);
}

// Stages load(i, k) for i < 64 and k0 <= k < k0 + 16 into dst[k - k0][i]. kAlongK: the
// operand is contiguous along k in memory (then consecutive threads walk k, else i), so
// global reads coalesce either way. The loader returns 0 outside its operand.
template <bool kAlongK, typename acc_t, typename Load>
__device__ __forceinline__ void stage(acc_t (&dst)[kStep][kTile + 1], const Load& load, int64_t k0) {
#pragma unroll
  for (int e = threadIdx.x; e < kTile * kStep; e += kThreads) {
    const int i = kAlongK ? e / kStep : e % kTile;
    const int k = kAlongK ? e % kStep : e / kTile;
    dst[k][i] = load(i, k0 + k);
  }
}

// acc += sum over k in [k_begin, k_end) of A(row, k) B(col, k), in slices of 16 (the loaders
// return 0 past k_end). Every thread of the block must call it: it synchronises.
template <bool kAAlongK, bool kBAlongK, typename acc_t, typename LoadA, typename LoadB>
__device__ __forceinline__ void tile_gemm(const LoadA& load_a, const LoadB& load_b, int64_t k_begin,
                                          int64_t k_end, TileStage<acc_t>& s, Micro<acc_t>& acc) {
  const int rl = row_lane(), cl = col_lane();
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kStep) {
    stage<kAAlongK>(s.a, load_a, k0);
    stage<kBAlongK>(s.b, load_b, k0);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kStep; ++k) {
      acc_t av[kMicro], bv[kMicro];
#pragma unroll
      for (int m = 0; m < kMicro; ++m) {
        av[m] = s.a[k][rl + kLanes * m];
        bv[m] = s.b[k][cl + kLanes * m];
      }
#pragma unroll
      for (int a = 0; a < kMicro; ++a)
#pragma unroll
        for (int b = 0; b < kMicro; ++b) acc[a][b] = fma(av[a], bv[b], acc[a][b]);
    }
    __syncthreads();
  }
}

// Row-major matrix operands with bounds: element (i, k) of a tile starting at (i0, 0).
// RowsAlongK: rows of length `cols` indexed by i, k is the column (x, W, r, codebook rows).
template <typename acc_t, typename scalar_t>
struct RowsAlongK {
  const scalar_t* data;
  int64_t rows, cols, i0;
  __device__ __forceinline__ acc_t operator()(int i, int64_t k) const {
    const int64_t r = i0 + i;
    return r < rows && k < cols ? static_cast<acc_t>(data[r * cols + k]) : acc_t(0);
  }
};

// ColumnsAlongI: k indexes rows of length `cols`, i the column (W or C read as K x D, g, x).
template <typename acc_t, typename scalar_t>
struct ColumnsAlongI {
  const scalar_t* data;
  int64_t rows, cols, i0;
  __device__ __forceinline__ acc_t operator()(int i, int64_t k) const {
    const int64_t c = i0 + i;
    return k < rows && c < cols ? static_cast<acc_t>(data[k * cols + c]) : acc_t(0);
  }
};

// Visits the thread's micro-tile elements that lie inside a rows x cols matrix whose tile
// starts at (row0, col0): f(a, b, row, col).
template <typename F>
__device__ __forceinline__ void for_each_owned(int64_t row0, int64_t rows, int64_t col0, int64_t cols, F&& f) {
  const int rl = row_lane(), cl = col_lane();
#pragma unroll
  for (int a = 0; a < kMicro; ++a) {
    const int64_t row = row0 + rl + kLanes * a;
    if (row >= rows) continue;
#pragma unroll
    for (int b = 0; b < kMicro; ++b) {
      const int64_t col = col0 + cl + kLanes * b;
      if (col < cols) f(a, b, row, col);
    }
  }
}

__host__ __device__ inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace bitcodes_ext::cuda
