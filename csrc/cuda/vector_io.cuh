// 16-byte vector loads and stores for the CUDA kernels: a Vec of 16 bytes is one LDG.128 /
// STG.128 / LDS.128 / STS.128 where its address is 16-byte aligned. Callers check alignment
// (a sliced tensor's storage offset can break it) and fall back to scalar accesses.
#pragma once

#include <cstdint>

namespace bitcodes_ext::cuda {

template <typename T, int kN>
struct alignas(sizeof(T) * kN) Vec {
  T v[kN];
};

// Elements of T in one 16-byte vector.
template <typename T>
constexpr int kVecOf = 16 / int(sizeof(T));

template <typename T>
using Vec16 = Vec<T, kVecOf<T>>;

template <typename T>
__host__ __device__ __forceinline__ bool aligned16(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename T, int kN>
__device__ __forceinline__ Vec<T, kN> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, kN>*>(p);
}

template <typename T, int kN>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, kN>& v) {
  *reinterpret_cast<Vec<T, kN>*>(p) = v;
}

// Writes out[0 .. count) of kN consecutive values at p: in 16-byte (or smaller, whole-run)
// vectors when `vector` (all kN present and p aligned to min(16, kN * sizeof(T)) bytes), else
// element by element.
template <typename T, int kN>
__device__ __forceinline__ void store_run(T* p, const T (&out)[kN], int count, bool vector) {
  constexpr int kChunk = kN * int(sizeof(T)) <= 16 ? kN : kVecOf<T>;
  static_assert(kN % kChunk == 0, "a run is whole vectors");
  if (vector) {
#pragma unroll
    for (int c = 0; c < kN; c += kChunk) {
      Vec<T, kChunk> v;
#pragma unroll
      for (int e = 0; e < kChunk; ++e) v.v[e] = out[c + e];
      store_vec<T, kChunk>(p + c, v);
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < kN; ++e)
    if (e < count) p[e] = out[e];
}

// Whether runs of kN elements starting at multiples of kN in rows of `row_length` elements of
// `base` can be stored by store_run as vectors: aligned, and every run whole (row_length a
// multiple of kN).
template <typename T, int kN>
__host__ __device__ __forceinline__ bool runs_aligned(const T* base, int64_t row_length) {
  constexpr int kBytes = kN * int(sizeof(T)) < 16 ? kN * int(sizeof(T)) : 16;
  return reinterpret_cast<uintptr_t>(base) % kBytes == 0 && row_length % kN == 0;
}

}  // namespace bitcodes_ext::cuda
