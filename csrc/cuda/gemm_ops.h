// The GEMMs of route gemm, through ATen: cuBLAS on CUDA tensors, and an exact stand-in on CPU
// tensors, where the CPU emulation of CUDA (tools/cuda_emulator) runs this same host code.
//
// Both compute every product and sum in float32 (float64 for float64 inputs) and round once
// into the output's dtype:
// - CUDA: at::mm_out, or its out_dtype overload (mm.dtype_out, torch >= 2.8) for bf16/fp16
//   inputs with a float32 output. cuBLAS accumulates bf16/fp16 in float32; float32 inputs get
//   TF32 only where torch.backends.cuda.matmul.allow_tf32 asks for it (off by default).
//   bf16/fp16 outputs (y, dx) are cuBLAS's float32 sums rounded once; torch's
//   allow_{bf16,fp16}_reduced_precision_reduction (on by default) would only matter for a
//   split-K GEMM, which these shapes (K = 2B or 4B against many tokens) give cuBLAS no reason
//   to pick. cuBLAS is deterministic on a given GPU and stream.
// - CPU: the operands converted to the accumulation type (exact: bf16 x bf16 and fp16 x fp16
//   products are exact in float32), multiplied there, then copied into the output. It takes
//   the liberty a GEMM library has (and CPU BLAS libraries do take, in their tail blocks): the
//   columns past the last whole block of 64 are summed in the reverse order of k, so the same
//   column of b can round differently depending on where it sits. Code that needs equal columns
//   to give equal results (vq's ties between equal codes) fails on the emulator, whatever the
//   CPU's BLAS does.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

namespace bitcodes_ext::cuda::gemm {

constexpr int64_t kStandInBlock = 64;  // the CPU stand-in's column block (see above)

// out (m x n, any strides cuBLAS takes: unit stride in one dimension) = a (m x k) . b (k x n).
// out's dtype is a's, or float32 for bf16/fp16 a.
inline void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (out.is_cuda()) {
    if (out.scalar_type() == a.scalar_type()) {
      at::mm_out(out, a, b);
    } else {
      at::mm_out(out, a, b, out.scalar_type());
    }
    return;
  }
  const auto acc = at::toOpMathType(a.scalar_type());
  const auto a_acc = a.to(acc), b_acc = b.to(acc);
  const int64_t n = b.size(1), whole = n / kStandInBlock * kStandInBlock;
  out.narrow(1, 0, whole).copy_(at::mm(a_acc, b_acc.narrow(1, 0, whole)));
  if (whole < n) out.narrow(1, whole, n - whole).copy_(at::mm(a_acc.flip(1), b_acc.narrow(1, whole, n - whole).flip(0)));
}

// sum += a . b, with sum in the accumulation type (a fixed order: bitwise reproducible).
inline void mm_accumulate(at::Tensor& sum, const at::Tensor& a, const at::Tensor& b) {
  auto product = at::empty({a.size(0), b.size(1)}, sum.options());
  mm_into(product, a, b);
  sum.add_(product);
}

}  // namespace bitcodes_ext::cuda::gemm
