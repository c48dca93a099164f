// Per-bit logistic noise for training, drawn from a counter-based Philox stream so that the
// numbers do not depend on how tokens are split across threads: token t reads subsequence t.
#pragma once

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/PhiloxRNGEngine.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>
#include <mutex>

namespace bitcodes_ext::cpu {

// One 64-bit seed per call from torch's default CPU generator, so torch.manual_seed
// reproduces a training step and consecutive steps draw different noise.
inline uint64_t draw_philox_seed() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
}

// out[t][i] = log(u / (1 - u)), u uniform on (0, 1), for tokens first_token .. first_token + nt.
// 23 random bits keep u and 1 - u exact in float, so the noise is finite (|n| < 16.7).
template <typename acc_t>
void logistic_noise(uint64_t seed, int64_t first_token, int64_t nt, int64_t num_bits, acc_t* out) {
  using V = at::vec::Vectorized<acc_t>;
  constexpr acc_t kScale = acc_t(1) / acc_t(1 << 23);
  for (int64_t t = 0; t < nt; ++t) {
    at::Philox4_32 engine(seed, static_cast<uint64_t>(first_token + t), 0);
    for (int64_t i = 0; i < num_bits; ++i)
      out[t * num_bits + i] = (acc_t(engine() >> 9) + acc_t(0.5)) * kScale;
  }
  const int64_t n = nt * num_bits;
  int64_t k = 0;
  for (; k + V::size() <= n; k += V::size()) {
    const V u = V::loadu(out + k);
    (u / (V(acc_t(1)) - u)).log().store(out + k);
  }
  for (; k < n; ++k) out[k] = std::log(out[k] / (acc_t(1) - out[k]));
}

}  // namespace bitcodes_ext::cpu
