// Outputs for the CPU ops, from memory that earlier outputs have freed.
//
// A large new tensor is fresh memory from the OS: the first write to each page faults, and on
// virtual machines those faults can cost more than the kernel that fills the tensor (a 64 MB
// tensor: ~20 ms to fill fresh, ~8 ms with huge-page advice, ~2 ms reused; benchmarks/NOTES.md). glibc
// returns every freed block of 32 MB or more to the OS, so a layer called in a loop would fault
// its outputs in on every call. So outputs of kCachedBytes or more come from blocks that freed
// outputs hand back to a cache (huge-page advice once per block), capped at
// BITCODES_CPU_OUTPUT_CACHE_MB (default kDefaultCacheMB, 0 turns it off); smaller ones
// from torch's allocator.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace bitcodes_ext::cpu {

constexpr int64_t kCachedBytes = int64_t(2) << 20;  // one block: smaller outputs would waste most of theirs
constexpr int64_t kDefaultCacheMB = 1024;
constexpr const char* kCacheLimitVariable = "BITCODES_CPU_OUTPUT_CACHE_MB";

// An uninitialised tensor: the kernel writes every element.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// Bytes held by the cache (freed blocks, not the live outputs), and the cap on them.
int64_t cached_output_bytes();
int64_t output_cache_limit_bytes();

// Frees the cached blocks to the OS; returns how many bytes that was.
int64_t release_cached_outputs();

}  // namespace bitcodes_ext::cpu
