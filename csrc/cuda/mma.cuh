// Tensor-core and asynchronous-copy instructions for the kernels of route `mma` (sm_80 and
// newer): inline PTX under nvcc, and the CUDA emulator's implementations of the same
// instructions under its build (emu_cuda.h defines BITCODES_CUDA_EMULATOR). Kernels use these
// wrappers only, so the emulator executes exactly the instruction stream they issue.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type";
// group = lane / 4, t = lane % 4; register r of a fragment holds elements 2r (low 16 bits) and
// 2r + 1):
//   A (16 x 16, row):  a[0] = A[group][2t, 2t+1],  a[1] = A[group+8][2t, 2t+1],
//                      a[2] = A[group][2t+8, 2t+9], a[3] = A[group+8][2t+8, 2t+9]
//   B (16 x 8, col):   b[0] = B[2t, 2t+1][group],  b[1] = B[2t+8, 2t+9][group]
//   C, D (16 x 8):     d[0], d[1] = D[group][2t, 2t+1],  d[2], d[3] = D[group+8][2t, 2t+1]
// ldmatrix .m8n8 .b16: lanes 8m..8m+7 address the rows of matrix m; lane l receives row l / 4,
// columns 2(l % 4), 2(l % 4) + 1 of matrix m in register m (.trans: column l / 4, rows
// 2(l % 4), 2(l % 4) + 1).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

namespace bitcodes_ext::cuda {

// The PTX below needs sm_80 (cp.async, bf16 mma); other targets compile a trap, and the host
// never routes work there (route.h).
#if !defined(BITCODES_CUDA_EMULATOR) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define BITCODES_MMA_PTX 1
#endif

#if !defined(BITCODES_CUDA_EMULATOR)
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

// The raw bits of 1.0, for one-hot operands.
template <typename scalar_t>
constexpr uint16_t one_bits();
template <>
constexpr uint16_t one_bits<c10::BFloat16>() {
  return 0x3f80;
}
template <>
constexpr uint16_t one_bits<c10::Half>() {
  return 0x3c00;
}

// d = a . b + d: mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32. Warp-collective.
template <typename scalar_t>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

template <>
__device__ __forceinline__ void mma_m16n8k16<c10::BFloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                            const uint32_t (&b)[2]) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::mma_m16n8k16(emu::Elem::kBF16, d, a, b);
#elif defined(BITCODES_MMA_PTX)
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();
#endif
}

template <>
__device__ __forceinline__ void mma_m16n8k16<c10::Half>(float (&d)[4], const uint32_t (&a)[4],
                                                        const uint32_t (&b)[2]) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::mma_m16n8k16(emu::Elem::kF16, d, a, b);
#elif defined(BITCODES_MMA_PTX)
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();
#endif
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16 (and .x2, .x1): `row` is this lane's row
// address in shared memory, 16-byte aligned. Warp-collective.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::ldmatrix<4, false>(r, row);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::ldmatrix<4, true>(r, row);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::ldmatrix<2, false>(r, row);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row))
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::ldmatrix<2, true>(r, row);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row))
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::ldmatrix<1, false>(r, row);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];"
               : "=r"(r[0])
               : "r"(shared_address(row))
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::ldmatrix<1, true>(r, row);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];"
               : "=r"(r[0])
               : "r"(shared_address(row))
               : "memory");
#else
  __trap();
#endif
}

// cp.async.cg.shared.global of 16 bytes (cached in L2 only), both addresses 16-byte aligned;
// with `fill` false nothing is read and the 16 bytes are zeros (src-size 0).
__device__ __forceinline__ void cp_async_cg16(void* dst, const void* src, bool fill) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::cp_async16(dst, src, fill ? 16 : 0);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
               :
               : "r"(shared_address(dst)), "l"(src), "r"(fill ? 16 : 0)
               : "memory");
#else
  __trap();
#endif
}

// cp.async.ca.shared.global of 16 bytes (cached in L1 too); otherwise as cp_async_cg16.
__device__ __forceinline__ void cp_async_ca16(void* dst, const void* src, bool fill) {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::cp_async16(dst, src, fill ? 16 : 0);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;"
               :
               : "r"(shared_address(dst)), "l"(src), "r"(fill ? 16 : 0)
               : "memory");
#else
  __trap();
#endif
}

// cp.async.commit_group: the calling thread's copies issued since the last commit form a group.
__device__ __forceinline__ void cp_async_commit() {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::cp_async_commit();
#elif defined(BITCODES_MMA_PTX)
  asm volatile("cp.async.commit_group;" ::: "memory");
#else
  __trap();
#endif
}

// cp.async.wait_group kPending: all but the kPending most recent groups of the calling thread
// have landed. Other threads see them only after a barrier.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#if defined(BITCODES_CUDA_EMULATOR)
  emu::cp_async_wait(kPending);
#elif defined(BITCODES_MMA_PTX)
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending) : "memory");
#else
  __trap();
#endif
}

}  // namespace bitcodes_ext::cuda
