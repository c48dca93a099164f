// The CPU ops' output cache (output_memory.h says why it exists).
#include "output_memory.h"

#include <ATen/Context.h>
#include <ATen/EmptyTensor.h>
#include <ATen/native/TensorFactories.h>
#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <unordered_map>

#ifdef __linux__
#include <pthread.h>
#include <sys/mman.h>
#endif

namespace bitcodes_ext::cpu {
namespace {

// Blocks are whole huge pages, aligned to them, so huge-page advice covers all of a block and a
// freed block fits any later output that rounds to the same size.
constexpr size_t kHugePage = size_t(2) << 20;

size_t round_to_blocks(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }

// Advice only: refused where THP is off or the memory was touched already, and nothing changes.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(data, bytes, MADV_HUGEPAGE);
#endif
}

int64_t read_limit_bytes() {
  const char* value = std::getenv(kCacheLimitVariable);
  if (value == nullptr || *value == '\0') return kDefaultCacheMB << 20;
  char* end = nullptr;
  errno = 0;
  const long long mb = std::strtoll(value, &end, 10);
  TORCH_CHECK(*end == '\0' && errno == 0 && mb >= 0 && mb <= (std::numeric_limits<int64_t>::max() >> 20),
              kCacheLimitVariable, " must be a whole number of MB, 0 or more; got '", value, "'");
  return int64_t(mb) << 20;
}

class OutputCache;
OutputCache& cache();

// A block and its links in the cache's list of freed blocks (intrusive, so that returning a
// block, which runs in a tensor's deleter, never allocates).
struct Block {
  void* data;
  size_t bytes;
  Block* newer = nullptr;
  Block* older = nullptr;
};

class OutputCache final : public c10::Allocator {
 public:
  OutputCache() {
#ifdef __linux__
    // A fork while another thread holds the lock would leave the child's copy locked forever.
    pthread_atfork([] { cache().mutex_.lock(); }, [] { cache().mutex_.unlock(); }, [] { cache().mutex_.unlock(); });
#endif
  }

  // The DataPtr's context is its data, as torch's own CPU allocator makes them (copy-on-write
  // clones need that); the block's size is looked up by address.
  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = round_to_blocks(n);
    void* data = take(bytes);
    if (data == nullptr) {
      data = fresh(bytes);
      if (data == nullptr) {  // cached blocks of other sizes may be what is missing
        release();
        data = fresh(bytes);
      }
      TORCH_CHECK_WITH(OutOfMemoryError, data != nullptr, "bitcodes_ext: out of memory allocating ", bytes,
                       " bytes for a CPU output");
      try {
        std::lock_guard<std::mutex> lock(mutex_);
        blocks_.emplace(data, Block{data, bytes});
      } catch (...) {
        std::free(data);
        throw;
      }
    }
    return {data, data, &return_to_cache, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  int64_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return int64_t(cached_bytes_);
  }

  int64_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t bytes = 0;
    while (oldest_ != nullptr) {
      bytes += int64_t(oldest_->bytes);
      destroy(oldest_);
    }
    return bytes;
  }

  const int64_t limit_bytes = read_limit_bytes();

 private:
  static void* fresh(size_t bytes) {
    void* data = nullptr;
    if (posix_memalign(&data, kHugePage, bytes) != 0) return nullptr;
    advise_huge_pages(data, bytes);
    return data;
  }

  // Under the lock: unlinks a cached block and gives it back to the OS.
  void destroy(Block* block) {
    unlink(block);
    void* data = block->data;
    blocks_.erase(data);
    std::free(data);
  }

  void unlink(Block* block) {
    (block->newer ? block->newer->older : newest_) = block->older;
    (block->older ? block->older->newer : oldest_) = block->newer;
    block->newer = block->older = nullptr;
    cached_bytes_ -= block->bytes;
  }

  // The most recently freed block of exactly this size: the one most likely still in cache.
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Block* block = newest_; block != nullptr; block = block->older) {
      if (block->bytes != bytes) continue;
      unlink(block);
      return block->data;
    }
    return nullptr;
  }

  // Keeps the block, newest first; the oldest ones go to the OS past the limit.
  void put(void* data) {
    std::lock_guard<std::mutex> lock(mutex_);
    Block* block = &blocks_.at(data);
    block->older = newest_;
    (newest_ ? newest_->newer : oldest_) = block;
    newest_ = block;
    cached_bytes_ += block->bytes;
    while (cached_bytes_ > size_t(limit_bytes)) {
      Block* old = oldest_;
      destroy(old);
    }
  }

  static void return_to_cache(void* data);

  std::mutex mutex_;
  std::unordered_map<void*, Block> blocks_;  // every block, live or cached (node-based: stable addresses)
  Block* newest_ = nullptr;
  Block* oldest_ = nullptr;
  size_t cached_bytes_ = 0;
};

// Never destroyed: outputs can outlive static destruction (a tensor freed at interpreter exit).
OutputCache& cache() {
  static OutputCache* instance = new OutputCache();
  return *instance;
}

void OutputCache::return_to_cache(void* data) { cache().put(data); }

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const auto bytes = at::detail::computeStorageNbytesContiguous(sizes, options.dtype().itemsize());
  if (bytes < size_t(kCachedBytes)) return at::empty(sizes, options);
  if (cache().limit_bytes == 0) {
    // Without the cache, huge-page advice on the whole huge pages inside the tensor still cuts
    // the cost of its faults (measured: the decode op at (16384, 1024, 64) took 30-34 ms
    // without it, 11-13 ms with it).
    auto out = at::empty(sizes, options);
    const auto begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1), last = (begin + bytes) & ~(kHugePage - 1);
    if (last > first) advise_huge_pages(reinterpret_cast<void*>(first), last - first);
    return out;
  }
  at::Tensor out = at::detail::empty_generic(sizes, &cache(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                             options.dtype().toScalarType(), std::nullopt);
  // As at::empty does: debugging runs can ask for uninitialised memory to be filled.
  if (at::globalContext().deterministicAlgorithms() && at::globalContext().deterministicFillUninitializedMemory())
    at::native::fill_empty_deterministic_(out);
  return out;
}

int64_t cached_output_bytes() { return cache().cached_bytes(); }
int64_t output_cache_limit_bytes() { return cache().limit_bytes; }
int64_t release_cached_outputs() { return cache().release(); }

}  // namespace bitcodes_ext::cpu
