// vq's selection rule, the one every backend and route calls (CPU: vq_cpu.cpp; CUDA: vq_cuda.cu,
// vq_epilogues.cuh, mma_kernels.cuh): whether `candidate` (a score and its code) beats `best`.
//   - the lower score wins;
//   - among equal scores, the lower code;
//   - a NaN score never wins (every comparison with NaN is false), so a row whose scores are all
//     NaN keeps the code it started from, 0.
// Scores and codes may be scalars (bool result) or SIMD vectors of lanes (at::vec::Vectorized:
// a lane mask).
#pragma once

#if defined(__CUDACC__)
#define BITCODES_HOST_DEVICE __host__ __device__
#else
#define BITCODES_HOST_DEVICE
#endif

namespace bitcodes_ext {

// The rule where the candidate's code is higher than the best's, as it always is for a caller
// that offers each lane's (or thread's) codes in increasing order: the lower score wins, and an
// equal one keeps the lower code. A strict compare, as cheap as the loop before the rule had.
template <typename Score>
BITCODES_HOST_DEVICE inline auto vq_better_later_code(const Score& score, const Score& best) {
  return score < best;
}

template <typename Score, typename Code>
BITCODES_HOST_DEVICE inline auto vq_better(const Score& score, const Code& code, const Score& best,
                                           const Code& best_code) {
  return vq_better_later_code(score, best) | ((score == best) & (code < best_code));
}

}  // namespace bitcodes_ext
