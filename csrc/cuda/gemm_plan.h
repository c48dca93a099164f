// Route `gemm`: the shapes of its workspace, shared by the host code (*_gemm.cu) and
// the cost model (cost_model.h), so that the model counts the bytes the code moves.
//
// Every GEMM of the route is ATen's (cuBLAS on a GPU) with float32 (float64) accumulation:
// - bf16/fp16 inputs ("pairs"): the products run over the 2B codebook rows, whose values are
//   exact in the input dtype, so every product is exact in float32 and the logit
//   x.c[2i+1] - x.c[2i] is taken in float32 afterwards;
// - float32/float64 inputs: plain GEMMs against W = c[2i+1] - c[2i] in the accumulation type.
// The workspace lives per chunk of tokens, so it is bounded by a constant (kWorkspaceBytes,
// kVqWorkspaceBytes, or kMinChunkTokens tokens' worth for enormous num_bits), never by the
// number of tokens.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace bitcodes_ext::cuda::gemm {

// The bound on the workspace of one call (tests/test_cuda_*.py state it too). Large enough that
// at 2^20 tokens a call makes ~10 chunks, so the ~10 ATen calls per chunk cost little next to
// the bytes; vq's score tiles are cheap enough to keep smaller.
constexpr int64_t kWorkspaceBytes = int64_t(128) << 20;
constexpr int64_t kVqWorkspaceBytes = int64_t(32) << 20;
constexpr int64_t kMinChunkTokens = 256;
// Workspace rows and column blocks start at multiples of 8 elements (16 bytes in bf16), the
// alignment cuBLAS's tensor-core kernels want; padding columns are zero and never read as data.
constexpr int64_t kAlign = 8;

inline int64_t chunks_of(int64_t n, int64_t size) { return (n + size - 1) / size; }

inline int64_t aligned(int64_t n) { return chunks_of(n, kAlign) * kAlign; }

inline bool uses_pairs(at::ScalarType dtype) { return dtype == at::kHalf || dtype == at::kBFloat16; }

inline int64_t acc_bytes(at::ScalarType dtype) { return dtype == at::kDouble ? 8 : 4; }

// BITCODES_CUDA_CHUNK_TOKENS=<n> sets the chunk to n tokens (and vq's code chunk to n codes);
// tests use it to cross chunks with small inputs, benchmarks to try other sizes. 0 if unset.
inline int64_t forced_chunk() {
  const char* forced = std::getenv("BITCODES_CUDA_CHUNK_TOKENS");
  if (forced == nullptr || *forced == '\0') return 0;
  const int64_t n = std::atoll(forced);
  TORCH_CHECK_VALUE(n >= 1, "BITCODES_CUDA_CHUNK_TOKENS must be a positive integer, got '", forced, "'");
  return n;
}

// Tokens per chunk for a workspace of bytes_per_token: as many as fit the budget, a multiple of
// 64, at least kMinChunkTokens.
inline int64_t chunk_tokens(int64_t bytes_per_token, int64_t budget = kWorkspaceBytes) {
  if (const int64_t forced = forced_chunk()) return forced;
  const int64_t fit = budget / std::max<int64_t>(1, bytes_per_token) / 64 * 64;
  return std::max(kMinChunkTokens, fit);
}

// Forward (and decode, which only has the one-hot part): per token, the logits
// L = x.G^T in the accumulation type (G = the 2B codebook rows for pairs, else W), and the
// one-hot H over the 2B rows in the input dtype (0 and 1 are exact), y = H.C.
struct ForwardPlan {
  bool pairs;
  int64_t logit_cols, logit_stride, onehot_stride, bytes_per_token, chunk;

  ForwardPlan(at::ScalarType dtype, int64_t B, bool with_logits = true)
      : pairs(uses_pairs(dtype)),
        logit_cols(pairs ? 2 * B : B),
        logit_stride(with_logits ? aligned(logit_cols) : 0),
        onehot_stride(aligned(2 * B)),
        bytes_per_token(logit_stride * acc_bytes(dtype) + onehot_stride * at::elementSize(dtype)),
        chunk(chunk_tokens(bytes_per_token)) {}
};

// Training backward: per token, U = g.G^T (accumulation type), then one matrix E in the
// operand dtype (the input dtype for pairs, else the accumulation type) with column blocks
//   [bits (B), 1, pad | r part 1 | ... | r part P | duplicates for dx],
// each block `aligned`. Pairs split r = r_hi + r_lo (P = 2, 16 significant bits; fp16 also
// scales r by a power of two per chunk to stay in its range) and dx = r.W is taken as
//   [r_hi, r_lo, r_hi, r_lo] . [c_odd; c_odd; -c_even; -c_even],
// exact products again; full types keep P = 1 and dx = r.W. The GEMMs:
//   dx = E[dx block] . Right,  S1 = E[bits, 1]^T g (row B is sum_t g),  S2 = E[r parts]^T x.
struct BackwardPlan {
  bool pairs, scaled;
  int64_t logit_cols, logit_stride, bit_block, part_stride, parts, dx_parts, e_stride, r_offset;
  int64_t r32_stride, dx_stride, bytes_per_token, chunk;

  BackwardPlan(at::ScalarType dtype, int64_t B, int64_t D, bool euclidean)
      : pairs(uses_pairs(dtype)),
        scaled(dtype == at::kHalf),
        logit_cols(pairs ? 2 * B : B),
        logit_stride(aligned(logit_cols)),
        bit_block(aligned(B + 1)),
        part_stride(aligned(B)),
        parts(pairs ? 2 : 1),
        dx_parts(pairs ? 4 : 1),
        e_stride(bit_block + dx_parts * part_stride),
        r_offset(bit_block),
        // float32 r for sum_t r (euclidean); full types read it from E's r block.
        r32_stride(pairs && euclidean ? B : 0),
        // fp16's dx leaves the GEMM in float32 and is scaled back into fp16 by our kernel.
        dx_stride(scaled ? D : 0),
        bytes_per_token((logit_stride + r32_stride + dx_stride) * acc_bytes(dtype) +
                        e_stride * (pairs ? int64_t(at::elementSize(dtype)) : acc_bytes(dtype))),
        chunk(chunk_tokens(bytes_per_token)) {}
};

// vq: score tiles S = x.C^T of chunk x code_chunk codes, in the accumulation type.
struct VqPlan {
  int64_t code_chunk, code_stride, chunk;

  VqPlan(at::ScalarType dtype, int64_t K)
      : code_chunk(std::min<int64_t>(K, forced_chunk() ? forced_chunk() : 4096)),
        code_stride(aligned(code_chunk)),
        chunk(chunk_tokens(code_stride * acc_bytes(dtype), kVqWorkspaceBytes)) {}
};

}  // namespace bitcodes_ext::cuda::gemm
