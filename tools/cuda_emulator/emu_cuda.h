// CPU emulation of the CUDA execution model, for testing csrc/cuda/ on machines without a GPU
// (see build.py). A block's threads are ucontext fibers on one OS thread; blocks run one after
// another. Between two __syncthreads a block's warps run one after another, in forward,
// backward or random order (and a warp's lanes likewise), so a warp runs ahead of the others
// and a missing barrier shows up as a result that depends on the order. __syncthreads checks
// that every thread reaches the same barrier count; warp-collective operations (shuffles,
// ldmatrix, mma) synchronise the 32 lanes of their warp only and fail on a partial warp, a
// partial mask or lanes that diverged. Not emulated: timing, occupancy, coalescing, bank
// conflicts, real device math (glibc's exp/log stand in), streams and graphs.
//
// Tensor-core and asynchronous-copy instructions (the wrappers of csrc/cuda/mma.cuh call
// these under BITCODES_CUDA_EMULATOR), as the PTX ISA documents them:
// - mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32: the register fragments of
//   A (16x16), B (16x8) and C/D (16x8) are placed by the formulas of PTX ISA section "Matrix
//   Fragments for mma.m16n8k16 with floating point type" (a_coord, b_coord, c_coord below).
//   Rounding: each bf16/f16 product is exact in float; the emulator adds C and the 16 products
//   in double, in k order, and rounds the sum once to float (round to nearest even). The
//   hardware's order and rounding inside one mma are not documented (it may truncate), so
//   tests allow float32-level accumulation error and no more.
// - ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{,.trans}.shared.b16: lanes 8m..8m+7 give the row
//   addresses of matrix m (16-byte aligned); lane l receives row l/4, columns 2(l%4) and
//   2(l%4)+1 of each matrix (with .trans: rows 2(l%4), 2(l%4)+1 of column l/4), the lower
//   column (row) in the low 16 bits.
// - cp.async.{ca,cg}.shared.global with 16 bytes and a src-size of 0..16 (the rest zero-filled),
//   cp.async.commit_group and cp.async.wait_group N, per thread: the destination is poisoned
//   (0xFF bytes: NaN in bf16/f16/float) when the copy is issued and written when wait_group
//   retires its group, so reading it early, or from another thread before a barrier, reads NaN.
//   A thread that exits with copies it never waited for fails.
#pragma once

// Kernel sources pick the emulator implementations of their device instructions with this.
#define BITCODES_CUDA_EMULATOR 1

#include <ATen/ATen.h>
#include <ATen/core/Generator.h>
#include <c10/core/GeneratorImpl.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <ucontext.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
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

// A cp.async copy, read when issued and written when its group retires.
struct AsyncCopy {
  void* dst;
  unsigned char bytes[16];
};
struct AsyncQueue {
  std::vector<AsyncCopy> open;                   // issued, not yet committed
  std::deque<std::vector<AsyncCopy>> committed;  // oldest first
};

constexpr int kWarp = 32;

struct Sched {
  int n = 0;
  std::vector<ucontext_t> ctx;
  ucontext_t main_ctx;
  std::vector<char*> stacks;
  std::vector<int> state;  // 0 ready, 1 at __syncthreads, 2 done, 3 at a warp-collective op
  std::vector<long> nbar, nwarp;
  int cur = -1;
  std::function<void()>* body = nullptr;
  int order_mode = 0;  // 0 forward, 1 reverse, 2 random
  std::mt19937 rng{1234};
  std::vector<uint64_t> xch;             // one word per thread, for shuffles and ldmatrix addresses
  std::vector<std::array<uint32_t, 6>> frag;  // per thread: the A and B registers of an mma
  std::vector<AsyncQueue> async;
};
inline Sched S;

inline bool pending_copies(const AsyncQueue& q) {
  if (!q.open.empty()) return true;
  for (const auto& group : q.committed)
    if (!group.empty()) return true;
  return false;
}

inline void entry() {
  (*S.body)();
  if (pending_copies(S.async[S.cur])) fail("a thread exited with cp.async copies it never waited for");
  S.state[S.cur] = 2;
}

inline void barrier() {
  S.state[S.cur] = 1;
  S.nbar[S.cur]++;
  swapcontext(&S.ctx[S.cur], &S.main_ctx);
}

// The calling thread's warp: its first thread and its lane count (a partial warp fails).
inline int warp_base() {
  const int base = S.cur & ~(kWarp - 1);
  if (S.n - base < kWarp) fail("warp-collective operation in a partial warp (block size not a multiple of 32)");
  return base;
}

// Waits until the 32 lanes of the calling thread's warp reach this point.
inline void warp_sync() {
  warp_base();
  S.state[S.cur] = 3;
  S.nwarp[S.cur]++;
  swapcontext(&S.ctx[S.cur], &S.main_ctx);
}

inline void order(std::vector<int>& ids) {
  if (S.order_mode == 1) std::reverse(ids.begin(), ids.end());
  if (S.order_mode == 2) std::shuffle(ids.begin(), ids.end(), S.rng);
}

inline void resume(int i) {
  S.state[i] = 0;
  S.cur = i;
  threadIdx.x = i;
  threadIdx.y = 0;
  threadIdx.z = 0;
  swapcontext(&S.main_ctx, &S.ctx[i]);
}

// Runs the lanes of one warp until each is at __syncthreads or done, releasing them at every
// warp-collective operation they all reach.
inline void run_warp(int w) {
  const int lo = w * kWarp, hi = std::min(S.n, lo + kWarp);
  std::vector<int> lanes(hi - lo);
  for (;;) {
    for (int i = 0; i < hi - lo; ++i) lanes[i] = lo + i;
    order(lanes);
    for (int i : lanes)
      if (S.state[i] == 0) resume(i);
    int waiting = 0;
    for (int i = lo; i < hi; ++i) waiting += S.state[i] == 3;
    if (waiting == 0) return;
    if (waiting != hi - lo) fail("lanes of a warp diverged: some wait at a warp-collective operation, others at __syncthreads or exited");
    for (int i = lo; i < hi; ++i)
      if (S.nwarp[i] != S.nwarp[lo]) fail("lanes of a warp reached different warp-collective operations");
    for (int i = lo; i < hi; ++i) S.state[i] = 0;
  }
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
  S.nwarp.assign(n, 0);
  S.xch.assign(n, 0);
  S.frag.assign(n, {});
  S.async.assign(n, AsyncQueue{});
  S.body = &body;
  for (int i = 0; i < n; ++i) {
    getcontext(&S.ctx[i]);
    S.ctx[i].uc_stack.ss_sp = S.stacks[i];
    S.ctx[i].uc_stack.ss_size = kStack;
    S.ctx[i].uc_link = &S.main_ctx;
    makecontext(&S.ctx[i], (void (*)())entry, 0);
  }
  std::vector<int> warps((n + kWarp - 1) / kWarp);
  for (;;) {
    for (int w = 0; w < (int)warps.size(); ++w) warps[w] = w;
    order(warps);
    for (int w : warps) run_warp(w);
    int done = 0;
    for (int i = 0; i < n; ++i) done += S.state[i] == 2;
    for (int i = 1; i < n; ++i)
      if (S.nbar[i] != S.nbar[0]) fail("threads of a block reached different numbers of barriers (divergent __syncthreads)");
    if (done == n) break;
    if (done != 0) fail("some threads exited while others wait at a barrier");
    for (int i = 0; i < n; ++i) S.state[i] = 0;
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
  emu::warp_sync();
  const int src = emu::warp_base() | ((tid & 31) ^ lane_mask);
  const uint64_t o = emu::S.xch[src];
  emu::warp_sync();  // every lane has read before any lane's next shuffle overwrites its word
  T r;
  std::memcpy(&r, &o, sizeof(T));
  return r;
}

namespace emu {

// ---- the register fragments of mma.m16n8k16 for .f16/.bf16 A and B and .f32 C/D, from the
// PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"): element i of a
// lane's fragment is in register i / 2, the lower-numbered element in the low 16 bits.
struct Coord {
  int row, col;
};
inline Coord a_coord(int lane, int i) {  // A is 16 x 16 (M x K), four .f16x2 registers
  const int group = lane >> 2, thread_in_group = lane % 4;
  const int row = (i < 2 || (4 <= i && i < 6)) ? group : group + 8;
  const int col = thread_in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0);
  return {row, col};
}
inline Coord b_coord(int lane, int i) {  // B is 16 x 8 (K x N), two .f16x2 registers
  const int group = lane >> 2, thread_in_group = lane % 4;
  return {thread_in_group * 2 + (i & 1) + (i >= 2 ? 8 : 0), group};
}
inline Coord c_coord(int lane, int i) {  // C and D are 16 x 8 (M x N), four .f32 registers
  const int group = lane >> 2, thread_in_group = lane % 4;
  return {i < 2 ? group : group + 8, thread_in_group * 2 + (i & 1)};
}

enum class Elem { kBF16, kF16 };

inline double element(Elem type, uint32_t reg, int half) {
  const uint16_t bits = static_cast<uint16_t>(half ? reg >> 16 : reg & 0xffffu);
  if (type == Elem::kBF16) return static_cast<float>(c10::BFloat16(bits, c10::BFloat16::from_bits()));
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}

// d = a . b + d for one warp; every lane of the warp must call it (mma.sync.aligned).
inline void mma_m16n8k16(Elem type, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  const int tid = S.cur, base = warp_base(), lane = tid - base;
  auto& mine = S.frag[tid];
  for (int r = 0; r < 4; ++r) mine[r] = a[r];
  for (int r = 0; r < 2; ++r) mine[4 + r] = b[r];
  warp_sync();
  double A[16][16], B[16][8];
  int seen_a[16][16] = {}, seen_b[16][8] = {};
  for (int l = 0; l < kWarp; ++l) {
    const auto& f = S.frag[base + l];
    for (int i = 0; i < 8; ++i) {
      const Coord c = a_coord(l, i);
      A[c.row][c.col] = element(type, f[i / 2], i % 2);
      seen_a[c.row][c.col]++;
    }
    for (int i = 0; i < 4; ++i) {
      const Coord c = b_coord(l, i);
      B[c.row][c.col] = element(type, f[4 + i / 2], i % 2);
      seen_b[c.row][c.col]++;
    }
  }
  for (int r = 0; r < 16; ++r)
    for (int k = 0; k < 16; ++k)
      if (seen_a[r][k] != 1 || (k < 8 && seen_b[r][k] != 1)) fail("mma fragment layout does not cover A or B exactly once");
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const Coord c = c_coord(lane, i);
    double sum = d[i];
    for (int k = 0; k < 16; ++k) sum += A[c.row][k] * B[k][c.col];
    out[i] = static_cast<float>(sum);
  }
  warp_sync();  // every lane has read the fragments before any lane's next mma overwrites its own
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

// ldmatrix .m8n8 .b16: kNum matrices, transposed with kTrans; `row` is this lane's row address.
template <int kNum, bool kTrans>
void ldmatrix(uint32_t (&r)[kNum], const void* row) {
  static_assert(kNum == 1 || kNum == 2 || kNum == 4, "ldmatrix loads 1, 2 or 4 matrices");
  const int tid = S.cur, base = warp_base(), lane = tid - base;
  S.xch[tid] = reinterpret_cast<uint64_t>(row);
  warp_sync();
  auto row_of = [&](int m, int j) {
    const uint64_t address = S.xch[base + 8 * m + j];
    if (address % 16 != 0) fail("ldmatrix row address not 16-byte aligned");
    return reinterpret_cast<const uint16_t*>(address);
  };
  uint32_t out[kNum];
  for (int m = 0; m < kNum; ++m) {
    uint16_t lo, hi;
    if (kTrans) {
      lo = row_of(m, 2 * (lane % 4))[lane / 4];
      hi = row_of(m, 2 * (lane % 4) + 1)[lane / 4];
    } else {
      const uint16_t* p = row_of(m, lane / 4);
      lo = p[2 * (lane % 4)];
      hi = p[2 * (lane % 4) + 1];
    }
    out[m] = uint32_t(lo) | (uint32_t(hi) << 16);
  }
  warp_sync();
  for (int m = 0; m < kNum; ++m) r[m] = out[m];
}

// cp.async of 16 bytes, of which the first src_bytes come from src and the rest are zeros.
inline void cp_async16(void* dst, const void* src, int src_bytes) {
  if (S.cur < 0) fail("cp.async outside a kernel");
  if (src_bytes < 0 || src_bytes > 16) fail("cp.async src-size outside 0..16");
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0) fail("cp.async shared-memory address not 16-byte aligned");
  if (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % 16 != 0) fail("cp.async global address not 16-byte aligned");
  AsyncCopy copy{dst, {}};
  if (src_bytes > 0) std::memcpy(copy.bytes, src, src_bytes);
  std::memset(dst, 0xff, 16);
  S.async[S.cur].open.push_back(copy);
}

inline void cp_async_commit() {
  auto& q = S.async[S.cur];
  q.committed.push_back(std::move(q.open));
  q.open.clear();
}

// Retires all but the `pending` most recent committed groups of the calling thread.
inline void cp_async_wait(int pending) {
  auto& q = S.async[S.cur];
  while ((int)q.committed.size() > pending) {
    for (const AsyncCopy& copy : q.committed.front()) std::memcpy(copy.dst, copy.bytes, 16);
    q.committed.pop_front();
  }
}

}  // namespace emu

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
// The emulated device reports compute capability 9.0 (it executes what route.h needs from sm_80).
struct EmuDeviceProp {
  int major = 9, minor = 0;
  int multiProcessorCount = 1;  // set by tests (emu_control.cpp) to steer launch choices
};
inline EmuDeviceProp* getCurrentDeviceProperties() {
  static EmuDeviceProp prop;
  return &prop;
}
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
