// CPU emulation of the CUDA execution model, for testing csrc/cuda/ on machines without a GPU
// (see build.py). A block's threads are ucontext fibers on one OS thread; __syncthreads
// switches fibers and checks that every thread reaches the same barrier count; blocks run one
// after another. Threads can be scheduled forwards, backwards or in random order, so a missing
// barrier shows up as a result that depends on the order. Not emulated: warps running ahead
// of each other between barriers beyond what the order modes reach, timing, occupancy,
// coalescing, real device math (glibc's exp/log stand in), streams and graphs.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>
#include <c10/core/GeneratorImpl.h>

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

typedef void* cudaStream_t;

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct emu_uint3 {
  unsigned x = 0, y = 0, z = 0;
};
inline emu_uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace emu {

[[noreturn]] inline void fail(const char* msg) {
  std::fprintf(stderr, "EMU FAILURE: %s\n", msg);
  std::fflush(stderr);
  std::abort();
}

constexpr size_t kStack = 256 * 1024;

struct Sched {
  int n = 0;
  std::vector<ucontext_t> ctx;
  ucontext_t main_ctx;
  std::vector<char*> stacks;
  std::vector<int> state;  // 0 ready, 1 at barrier, 2 done
  std::vector<long> nbar;
  int cur = -1;
  std::function<void()>* body = nullptr;
  int order_mode = 0;  // 0 forward, 1 reverse, 2 random
  std::mt19937 rng{1234};
  std::vector<uint64_t> xch;
};
inline Sched S;

inline void entry() {
  (*S.body)();
  S.state[S.cur] = 2;
}

inline void barrier() {
  S.state[S.cur] = 1;
  S.nbar[S.cur]++;
  swapcontext(&S.ctx[S.cur], &S.main_ctx);
}

inline void run_block(int n, std::function<void()> body) {
  if (n <= 0 || n > 1024) fail("bad block size");
  if ((int)S.stacks.size() < n) {
    while ((int)S.stacks.size() < n) S.stacks.push_back(static_cast<char*>(std::malloc(kStack)));
  }
  S.n = n;
  S.ctx.assign(n, ucontext_t{});
  S.state.assign(n, 0);
  S.nbar.assign(n, 0);
  S.xch.assign(n, 0);
  S.body = &body;
  for (int i = 0; i < n; ++i) {
    getcontext(&S.ctx[i]);
    S.ctx[i].uc_stack.ss_sp = S.stacks[i];
    S.ctx[i].uc_stack.ss_size = kStack;
    S.ctx[i].uc_link = &S.main_ctx;
    makecontext(&S.ctx[i], (void (*)())entry, 0);
  }
  std::vector<int> order(n);
  for (;;) {
    for (int i = 0; i < n; ++i) order[i] = i;
    if (S.order_mode == 1) std::reverse(order.begin(), order.end());
    if (S.order_mode == 2) std::shuffle(order.begin(), order.end(), S.rng);
    for (int i : order) {
      if (S.state[i] == 2) continue;
      S.state[i] = 0;
      S.cur = i;
      threadIdx.x = i;
      threadIdx.y = 0;
      threadIdx.z = 0;
      swapcontext(&S.main_ctx, &S.ctx[i]);
    }
    int done = 0;
    for (int i = 0; i < n; ++i) done += S.state[i] == 2;
    for (int i = 1; i < n; ++i)
      if (S.nbar[i] != S.nbar[0]) fail("threads of a block reached different numbers of barriers (divergent __syncthreads / shuffle)");
    if (done == n) break;
    if (done != 0) fail("some threads exited while others wait at a barrier");
  }
  S.cur = -1;
}

inline void* g_dyn_smem = nullptr;
template <typename T>
T* dyn_smem() {
  return static_cast<T*>(g_dyn_smem);
}

struct Launcher {
  dim3 g, b;
  size_t smem;
  Launcher(dim3 g_, dim3 b_, size_t smem_, cudaStream_t) : g(g_), b(b_), smem(smem_) {}
  template <typename K, typename... A>
  void run(K k, A&&... a) {
    if (g.x == 0 || g.y == 0 || g.z == 0) fail("empty grid");
    if (g.y > 65535 || g.z > 65535 || g.x > 2147483647u) fail("grid too large");
    if (b.y != 1 || b.z != 1) fail("2-D block not emulated");
    if (smem > 48 * 1024) fail("dynamic shared memory > 48 KiB without opt-in");
    std::vector<uint64_t> buf((smem + 7) / 8 + 1);
    gridDim = g;
    blockDim = b;
    for (unsigned z = 0; z < g.z; ++z)
      for (unsigned y = 0; y < g.y; ++y)
        for (unsigned x = 0; x < g.x; ++x) {
          std::memset(buf.data(), 0xA5, buf.size() * 8);  // poison: dynamic smem is uninitialised
          g_dyn_smem = buf.data();
          blockIdx.x = x;
          blockIdx.y = y;
          blockIdx.z = z;
          run_block(static_cast<int>(b.x), [&] { k(a...); });
        }
    g_dyn_smem = nullptr;
  }
};

}  // namespace emu

inline void __syncthreads() { emu::barrier(); }

inline unsigned atomicOr(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old | v;
  return old;
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  static_assert(sizeof(T) <= 8, "shuffle of > 8 bytes");
  if (mask != 0xffffffffu) emu::fail("partial-mask shuffle not emulated");
  if (lane_mask < 0 || lane_mask > 31) emu::fail("bad lane mask");
  const int tid = emu::S.cur;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  emu::S.xch[tid] = bits;
  emu::barrier();  // stricter than a warp: every thread of the block must shuffle
  const int src = (tid & ~31) | ((tid & 31) ^ lane_mask);
  if (src >= emu::S.n) emu::fail("shuffle source outside the block");
  const uint64_t o = emu::S.xch[src];
  emu::barrier();
  T r;
  std::memcpy(&r, &o, sizeof(T));
  return r;
}

// ---- stubs of the CUDA-only parts of ATen / c10 ----
#define C10_CUDA_KERNEL_LAUNCH_CHECK() \
  do {                                 \
  } while (0)

namespace c10::cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};
}  // namespace c10::cuda

#include <ATen/cuda/PhiloxCudaState.h>

namespace at::cuda {
struct EmuStream {
  cudaStream_t stream() const { return nullptr; }
};
inline EmuStream getCurrentCUDAStream() { return {}; }
}  // namespace at::cuda

namespace at {
// A stand-in for torch's CUDA generator with the same philox_cuda_state contract
// (increment rounded up to a multiple of 4, state returned before the increment).
struct CUDAGeneratorImpl : public c10::GeneratorImpl {
  CUDAGeneratorImpl()
      : c10::GeneratorImpl(c10::Device(c10::DeviceType::CUDA, 0), c10::DispatchKeySet(c10::DispatchKey::CUDA)) {}
  static c10::DeviceType device_type() { return c10::DeviceType::CUDA; }
  uint64_t seed_ = 67280421310721ull, offset_ = 0;
  at::PhiloxCudaState philox_cuda_state(uint64_t increment) {
    increment = ((increment + 3) / 4) * 4;
    TORCH_INTERNAL_ASSERT(offset_ % 4 == 0);
    at::PhiloxCudaState s(seed_, offset_);
    offset_ += increment;
    return s;
  }
  void set_current_seed(uint64_t s) override {
    seed_ = s;
    offset_ = 0;
  }
  void set_offset(uint64_t o) override { offset_ = o; }
  uint64_t get_offset() const override { return offset_; }
  uint64_t current_seed() const override { return seed_; }
  uint64_t seed() override { return seed_; }
  void set_state(const c10::TensorImpl&) override {}
  c10::intrusive_ptr<c10::TensorImpl> get_state() const override { return {}; }
  CUDAGeneratorImpl* clone_impl() const override {
    auto* g = new CUDAGeneratorImpl();
    g->seed_ = seed_;
    g->offset_ = offset_;
    return g;
  }
};
namespace cuda::detail {
inline const at::Generator& getDefaultCUDAGenerator(c10::DeviceIndex = -1) {
  static at::Generator g = at::make_generator<at::CUDAGeneratorImpl>();
  return g;
}
}  // namespace cuda::detail
}  // namespace at

// Device math: CUDA's overloads pick the float versions for float arguments.
namespace bitcodes_ext::cuda {
using std::exp;
using std::fma;
using std::frexp;
using std::ldexp;
using std::log;
using std::max;
using std::min;
using std::sqrt;
}  // namespace bitcodes_ext::cuda
