"""The mutation catalogue: small planted bugs that the test suite must catch (tools/mutants.py runs it).

Each mutant replaces one exact string, which must occur exactly once, in one file. `first` names
the tests most likely to catch it: they run first (then the rest of the suite, in full mode), and
alone in quick mode, where they must catch it by themselves. A surviving mutant is a missing
test: add the test, never weaken or delete the mutant.

Files with arithmetic that have no mutant here, and why:
- csrc/cpu/output_memory.cpp: the rounding to 2 MB, the madvise() hint and the debugging fill
  of uninitialised memory change no value any op returns (every kernel writes every element; mutants
  there are equivalent); its cache bookkeeping has the mutants below.
- bitcodes_ext/_extension.py: beyond the preference mutant below, its capability comparison is
  checked by test_build.py, which fails in CI (and here: the runner sets CI=1) when the kernels
  do not load.
- bitcodes_ext/vq.py, info.py, __init__.py, csrc/bitcodes.cpp, csrc/python_module.cpp: no
  arithmetic.
"""

from dataclasses import dataclass
from typing import Tuple

# What the issue asks the catalogue to cover; every mutant names one of these.
COVERS = (
    "ties",
    "NaN",
    "vector tails",
    "tile and chunk boundaries",
    "dtype conversion",
    "gradient scaling",
    "euclidean bias and gradient",
    "vq ties and exact distance",
    "noise stream",
    "pure-torch fallback",
    "overlapped sum",
    "quantizer state",
    "bad input",
    "package compatibility",
    "binary entropy",
    "CPU dispatch",
    "output cache",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    covers: str
    bug: str  # what goes wrong, in a few words
    first: Tuple[str, ...]  # test files or node ids to run first (and alone in quick mode)
    quick: bool = False  # part of the fast subset that CI runs

    @property
    def kind(self) -> str:
        """cuda: csrc/cuda/ (emulated suite); cpu: the rest of csrc/ (rebuild); python: no rebuild."""
        if self.path.startswith("csrc/cuda/"):
            return "cuda"
        return "cpu" if self.path.startswith("csrc/") else "python"


TIES = "tests/test_ties.py"
PACKAGE = "tests/test_reference_package.py"
KERNELS = "tests/test_kernels.py"
VQ = "tests/test_vq.py"
CUDA_BITCODES = "tests/test_cuda_bitcodes.py"
CUDA_VQ = "tests/test_cuda_vq.py"
CUDA_TILES = "tests/test_cuda_tiles.py"
ENTROPY = "tests/test_binary_entropy.py"
LFQ = "tests/test_lookup_free.py"
OUTPUT_CACHE = "tests/test_output_cache.py"

MUTANTS = (
    # ---- csrc/cpu/microkernels.h: threshold, straight-through terms, projections, sums ----
    Mutant(
        "threshold-tie", "csrc/cpu/microkernels.h",
        "(zz > V(acc_t(0))).zero_mask()", "(zz >= V(acc_t(0))).zero_mask()",
        "ties", "an exact-zero margin (zero token, equal pair) gives bit 1",
        (f"{TIES}::test_exact_zero_margins_give_bit_0_in_eval",), quick=True,
    ),
    Mutant(
        "threshold-nan", "csrc/cpu/microkernels.h",
        "~uint32_t((zz > V(acc_t(0))).zero_mask())", "uint32_t((zz <= V(acc_t(0))).zero_mask())",
        "NaN", "a NaN margin gives bit 1 (positive = not <= 0)",
        (f"{KERNELS}::test_nan_rows_give_zero_bits",),
    ),
    Mutant(
        "straight-through-tie", "csrc/cpu/microkernels.h",
        "V bit = V::blendv(zero, one, zz > zero);", "V bit = V::blendv(zero, one, zz >= zero);",
        "ties", "the training backward counts a z = 0 bit as 1 in the codebook gradient",
        (f"{TIES}::test_exact_zero_margins_give_bit_0_in_training",),
    ),
    Mutant(
        "straight-through-scale", "csrc/cpu/microkernels.h",
        "V rr = p * (one - p) * V::loadu(u + i) / vtau;",
        "V rr = p * (one - p) * V::loadu(u + i) / vtau * V(acc_t(0.995));",
        "gradient scaling", "r = p(1-p)u/tau 0.5% too small",
        (f"{KERNELS}::test_train_matches_oracle",),
    ),
    Mutant(
        "projection-token-tail", "csrc/cpu/microkernels.h",
        "for (; t < nt; ++t) project_block<acc_t, 1, MV>",
        "for (; t + 1 < nt; ++t) project_block<acc_t, 1, MV>",
        "tile and chunk boundaries", "the last token of a tile left over by the register blocks is not projected",
        (f"{KERNELS}::test_eval_matches_oracle",),
    ),
    Mutant(
        "projection-two-vector-block", "csrc/cpu/microkernels.h",
        "if (b + 2 * L <= nb) {", "if (b + 2 * L < nb) {",
        "vector tails", "when exactly two vectors of bits remain, the second is not projected",
        (f"{KERNELS}::test_eval_matches_oracle", "tests/test_fuzz.py"),
    ),
    Mutant(
        "dx-panel-tail", "csrc/cpu/microkernels.h",
        "else if (width > L) combine_panel<acc_t, 2, false>(R, nt, ldr, nb, panel, width - L, out + d, ldo);",
        "else if (width > L) combine_panel<acc_t, 2, false>(R, nt, ldr, nb, panel, width - L - 1, out + d, ldo);",
        "vector tails", "dx misses the last feature of a panel tail of 1-2 vectors",
        (f"{KERNELS}::test_train_matches_oracle",),
    ),
    Mutant(
        "grad-sum-tail", "csrc/cpu/microkernels.h",
        ".store(sum + d, D - d);", ".store(sum + d, D - d - 1);",
        "vector tails", "sum_t g misses its last feature when D is not a multiple of the vector width",
        (f"{KERNELS}::test_eval_gradient_reaches_only_the_codebook", f"{KERNELS}::test_train_matches_oracle"),
    ),
    # ---- csrc/cpu/lookup.h: the overlapped sum's tables ----
    Mutant(
        "pack-codes-tail", "csrc/cpu/lookup.h",
        "for (int64_t j = 0; 4 * full + j < num_bits; ++j)", "for (int64_t j = 0; 4 * full + j + 1 < num_bits; ++j)",
        "vector tails", "from_bits drops the last bit of a partial group of 4 (num_bits % 4 != 0)",
        (f"{KERNELS}::test_from_bits_reproduces_y",),
    ),
    Mutant(
        "lookup-last-odd-group", "csrc/cpu/lookup.h",
        "  if (g < G)\n", "  if (g + 1 < G)\n",
        "vector tails", "y misses the last look-up group when the number of groups is even",
        (f"{KERNELS}::test_eval_matches_oracle",),
    ),
    Mutant(
        "lookup-slice-offset", "csrc/cpu/lookup.h",
        "out + t * D + d0);", "out + t * D);",
        "tile and chunk boundaries", "every table slice writes the first features of y (wide D, many slices)",
        (f"{KERNELS}::test_eval_matches_oracle",),
    ),
    # ---- csrc/cpu/codebook_grad.h, tiles.h: chunks and tiles ----
    Mutant(
        "chunk-sum-skips-one", "csrc/cpu/codebook_grad.h",
        "for (int64_t c = 1; c < chunks; ++c)", "for (int64_t c = 2; c < chunks; ++c)",
        "tile and chunk boundaries", "the codebook gradient leaves out the second chunk of tokens",
        (f"{KERNELS}::test_eval_gradient_reaches_only_the_codebook",),
    ),
    Mutant(
        "chunk-boundaries", "csrc/cpu/tiles.h",
        "return chunk * tiles / chunks;", "return chunk * (tiles / chunks);",
        "tile and chunk boundaries", "with more tiles than chunks (> 64 tiles), the last tiles belong to no chunk",
        (f"{KERNELS}::test_gradients_with_more_tiles_than_chunks",),
    ),
    Mutant(
        "tile-count", "csrc/cpu/tiles.h",
        "return (num_tokens + kTileTokens - 1) / kTileTokens;", "return (num_tokens + kTileTokens - 2) / kTileTokens;",
        "tile and chunk boundaries", "a last tile of exactly one token is dropped (N = 48k + 1)",
        (f"{KERNELS}::test_eval_matches_oracle",),
    ),
    Mutant(
        "convert-tail", "csrc/cpu/tiles.h",
        "at::vec::convert(src, buffer, n);", "at::vec::convert(src, buffer, n - 1);",
        "dtype conversion", "bf16/fp16 tiles: the last input element is not converted to float",
        (f"{KERNELS}::test_eval_matches_oracle",),
    ),
    # ---- csrc/cpu/noise.h: the noise stream ----
    Mutant(
        "noise-subsequence", "csrc/cpu/noise.h",
        "at::Philox4_32 engine(seed, static_cast<uint64_t>(first_token + t), 0);",
        "at::Philox4_32 engine(seed, static_cast<uint64_t>(t), 0);",
        "noise stream", "every tile of 48 tokens draws the same noise",
        (f"{KERNELS}::test_drawn_noise_depends_only_on_seed_token_and_bit",), quick=True,
    ),
    Mutant(
        "noise-scalar-tail", "csrc/cpu/noise.h",
        "out[k] = std::log(out[k] / (acc_t(1) - out[k]));", "out[k] = std::log(out[k]);",
        "noise stream", "the numbers past the last whole vector of a tile are log(u), not logistic",
        (f"{KERNELS}::test_drawn_noise_depends_only_on_seed_token_and_bit",),
    ),
    # ---- csrc/vq_select.h: vq's selection rule, which every backend and route calls ----
    Mutant(
        "vq-select-equal-score", "csrc/vq_select.h",
        "return score < best;", "return score <= best;",
        "vq ties and exact distance", "among equal scores the later code wins (the CPU kernel: within and across lanes)",
        (f"{VQ}::test_exact_ties_go_to_the_lowest_index_across_lanes_and_tiles",), quick=True,
    ),
    Mutant(
        "vq-select-tie-order", "csrc/vq_select.h",
        "(code < best_code)", "(code > best_code)",
        "vq ties and exact distance", "among equal scores the higher code wins where two are compared out of order",
        (f"{VQ}::test_adversarial_ties_and_nan",),
    ),
    # ---- csrc/cpu/vq_cpu.cpp ----
    Mutant(
        "vq-code-tile-offset", "csrc/cpu/vq_cpu.cpp",
        "lane_offsets + V(acc_t(k0 + k))", "lane_offsets + V(acc_t(k))",
        "tile and chunk boundaries", "codes past the first codebook tile are reported without the tile's offset",
        (f"{VQ}::test_matches_scipy",),
    ),
    Mutant(
        "vq-distance-precision", "csrc/cpu/vq_cpu.cpp",
        "double sum = 0;", "acc_t sum = 0;",
        "vq ties and exact distance", "the chosen code's distance is summed in float, not double",
        (f"{VQ}::test_distance_is_the_exact_one_rounded",),
    ),
    # ---- csrc/cpu/decode_cpu.cpp, panels.h, prepared_codebook.h ----
    Mutant(
        "decode-grad-scale", "csrc/cpu/decode_cpu.cpp",
        "bits[t * Bp + i] = acc_t(bits8[(t0 + t) * B + i]);",
        "bits[t * Bp + i] = acc_t(bits8[(t0 + t) * B + i]) * acc_t(0.995);",
        "gradient scaling", "the eval/from_bits codebook gradient's bit terms 0.5% too small",
        (f"{KERNELS}::test_eval_gradient_reaches_only_the_codebook",),
    ),
    Mutant(
        "panel-layout", "csrc/cpu/panels.h",
        "permute({1, 0, 2})", "permute({0, 1, 2})",
        "tile and chunk boundaries", "column panels laid out row-major: wrong as soon as there are two panels",
        (f"{KERNELS}::test_train_matches_oracle", f"{VQ}::test_matches_scipy"),
    ),
    Mutant(
        "codebook-through-half", "csrc/cpu/prepared_codebook.h",
        "p.codebook = codebook.to(acc).contiguous();", "p.codebook = codebook.to(at::kHalf).to(acc).contiguous();",
        "dtype conversion", "the codebook is rounded to float16 on its way to the accumulation type",
        (f"{KERNELS}::test_eval_matches_oracle",),
    ),
    # ---- csrc/: shared by the CPU and CUDA ops ----
    Mutant(
        "euclidean-bias-scale", "csrc/codebook_terms.h",
        ".sum(1) * 0.5;", ".sum(1) * 0.495;",
        "euclidean bias and gradient", "the euclidean bias 1% too small",
        (f"{TIES}::test_exact_zero_margins_give_bit_0_in_eval", f"{KERNELS}::test_eval_matches_oracle"),
    ),
    Mutant(
        "euclidean-grad-scale", "csrc/codebook_terms.h",
        "grad_odd.sub_(r_sum.unsqueeze(1) * codebook.slice(0, 1, c10::nullopt, 2));",
        "grad_odd.sub_(r_sum.unsqueeze(1) * codebook.slice(0, 1, c10::nullopt, 2) * 0.99);",
        "euclidean bias and gradient", "the odd codes' euclidean gradient term 1% too small",
        (f"{KERNELS}::test_train_matches_oracle",),
    ),
    Mutant(
        "noise-dtype", "csrc/checks.h",
        "return noise->to(at::toOpMathType(x.scalar_type())).contiguous();",
        "return noise->to(at::kFloat).to(at::toOpMathType(x.scalar_type())).contiguous();",
        "dtype conversion", "injected noise is rounded to float32 on its way to float64",
        (f"{KERNELS}::test_train_matches_oracle",),
    ),
    # ---- bitcodes_ext/: the pure-torch fallback (and oracle) and the Python faces ----
    Mutant(
        "reference-eval-tie", "bitcodes_ext/reference.py",
        "bits = pair_logits(xc, cb, metric) > 0", "bits = pair_logits(xc, cb, metric) >= 0",
        "ties", "the fallback gives bit 1 at an exact-zero logit in eval",
        (f"{PACKAGE}::test_zero_logit_ties_match_package_in_eval",), quick=True,
    ),
    Mutant(
        "reference-train-tie", "bitcodes_ext/reference.py",
        "bits = z.detach() > 0", "bits = z.detach() >= 0",
        "ties", "the fallback gives bit 1 at z = 0 in training",
        (f"{PACKAGE}::test_zero_logit_ties_match_package_in_training",),
    ),
    Mutant(
        "reference-temperature", "bitcodes_ext/reference.py",
        "soft = torch.sigmoid(z / temperature)", "soft = torch.sigmoid(z / (temperature * 1.01))",
        "gradient scaling", "the fallback's straight-through gradient at a 1% higher temperature",
        (f"{KERNELS}::test_train_matches_oracle",),
    ),
    Mutant(
        "reference-euclidean-bias", "bitcodes_ext/reference.py",
        "logits = logits - 0.5 * (odd.square()", "logits = logits - 0.495 * (odd.square()",
        "euclidean bias and gradient", "the fallback's euclidean bias 1% too small",
        (f"{TIES}::test_exact_zero_margins_give_bit_0_in_eval",),
    ),
    Mutant(
        "reference-noise-sign", "bitcodes_ext/reference.py",
        "return gumbels[..., 1] - gumbels[..., 0]", "return gumbels[..., 0] - gumbels[..., 1]",
        "noise stream", "the fallback's noise is g0 - g1: not the package's draw under the same seed",
        (f"{PACKAGE}::test_reference_draws_the_package_noise_under_the_same_seed",),
    ),
    Mutant(
        "reference-compute-dtype", "bitcodes_ext/reference.py",
        "return torch.float64 if dtype == torch.float64 else torch.float32",
        "return torch.float64 if dtype == torch.float64 else dtype",
        "dtype conversion", "the fallback accumulates bf16/fp16 inputs in bf16/fp16",
        (f"{PACKAGE}::test_eval_matches_package", "tests/test_ops.py::test_opcheck_forward"),
    ),
    Mutant(
        "reference-decode-dtype", "bitcodes_ext/reference.py",
        "    acc = compute_dtype(codebook.dtype)\n    cb = codebook.to(acc)",
        "    acc = codebook.dtype\n    cb = codebook.to(acc)",
        "dtype conversion", "the fallback's from_bits sums bf16/fp16 codebooks in bf16/fp16, so it misses y",
        ("tests/test_kernels.py::test_from_bits_reproduces_y_in_every_dtype_on_every_backend",),
    ),
    Mutant(
        "reference-vq-distance", "bitcodes_ext/reference.py",
        "dist = (x.double() - codebook.double()[codes])", "dist = (x - c[codes])",
        "vq ties and exact distance", "the fallback's vq distance computed in float32, not double",
        (f"{VQ}::test_distance_is_the_exact_one_rounded",),
    ),
    Mutant(
        "fallback-under-autocast", "bitcodes_ext/functional.py",
        "return torch.autocast(device.type, enabled=False)", "return torch.autocast(device.type, enabled=True)",
        "pure-torch fallback", "the fallback's float32 matmuls are rounded to the autocast dtype",
        ("tests/test_ops.py::test_from_bits_and_vq_ignore_autocast", "tests/test_ops.py::test_autocast_runs_in_the_autocast_dtype"),
    ),
    Mutant(
        "autocast-dtype", "bitcodes_ext/functional.py",
        "return torch.get_autocast_dtype(device.type)", "return torch.float16",
        "dtype conversion", "under autocast, x and the codebook are cast to float16 whatever autocast's dtype",
        ("tests/test_ops.py::test_autocast_runs_in_the_autocast_dtype",),
    ),
    Mutant(
        "fake-z-dtype", "bitcodes_ext/ops.py",
        "dtype=compute_dtype(x.dtype))", "dtype=x.dtype)",
        "dtype conversion", "the fake kernel gives z the input dtype instead of the accumulation type",
        ("tests/test_ops.py::test_opcheck_forward",),
    ),
    Mutant(
        "restart-usage", "bitcodes_ext/quantizer.py",
        "self.cluster_size[dead] = 1.0", "self.cluster_size[dead] = 0.5",
        "quantizer state", "a restarted code's usage is not reset to 1",
        ("tests/test_quantizer.py::test_dead_codes_restart_on_batch_vectors",), quick=True,
    ),
    Mutant(
        "restart-embed-sum", "bitcodes_ext/quantizer.py",
        "self.embed_sum[dead] = fresh", "self.embed_sum[dead] = 0.5 * fresh",
        "quantizer state", "a restarted code's EMA sum does not restart with it",
        ("tests/test_quantizer.py::test_dead_codes_restart_on_batch_vectors",),
    ),
    Mutant(
        "ema-smoothing", "bitcodes_ext/quantizer.py",
        "smoothed = (self.cluster_size + self.eps)", "smoothed = (self.cluster_size + 2 * self.eps)",
        "quantizer state", "the EMA's Laplace smoothing adds eps twice",
        ("tests/test_quantizer.py::test_ema_step_matches_the_formula",),
    ),
    Mutant(
        "pack-bits-padding", "bitcodes_ext/bits.py",
        "pad = -bits.shape[-1] % 8", "pad = bits.shape[-1] % 8",
        "vector tails", "pack_bits pads to the wrong length when num_bits % 8 != 0",
        ("tests/test_bits.py",),
    ),
    Mutant(
        "odd-codebook", "bitcodes_ext/_validate.py",
        "codebook.shape[0] < 2 or codebook.shape[0] % 2", "codebook.shape[0] < 2",
        "bad input", "an odd number of codebook rows is accepted",
        ("tests/test_errors.py::test_bad_codebook",),
    ),
    Mutant(
        "layer-init-scale", "bitcodes_ext/layers.py",
        "torch.randn(2 * num_bits, features))", "torch.randn(2 * num_bits, features) / 2)",
        "package compatibility", "the codebook starts at half the package's randn scale",
        (f"{PACKAGE}::test_constructor_matches_positional_order",),
    ),
    # ---- csrc/cuda/: killed by tests/test_cuda_*.py on the CUDA emulator ----
    Mutant(
        "cuda-threshold-tie", "csrc/cuda/bitcodes_kernels.cuh",
        "const bool bit = e < count && z[e] > acc_t(0);", "const bool bit = e < count && z[e] >= acc_t(0);",
        "ties", "the CUDA forward gives bit 1 at an exact-zero margin",
        (f"{CUDA_BITCODES}::test_exact_zero_margins_give_bit_0",),
    ),
    Mutant(
        "cuda-overlapped-partial-sum", "csrc/cuda/overlapped_sum.cuh",
        "for (int n = 0; n < T::kMC; ++n) acc[m][n] += partial[m][n];",
        "for (int n = 0; n < T::kMC; ++n) acc[m][n] = partial[m][n];",
        "overlapped sum", "the overlapped sum keeps only its last partial sum of 64 pairs",
        (f"{CUDA_BITCODES}::test_eval_matches_oracle",),
    ),
    Mutant(
        "cuda-overlapped-select", "csrc/cuda/overlapped_sum.cuh",
        "acc[m][n] += bit ? odd[n] : even[n];", "acc[m][n] += bit ? odd[n] : odd[n];",
        "overlapped sum", "the overlapped sum adds the odd code of every pair",
        (f"{CUDA_BITCODES}::test_eval_matches_oracle",),
    ),
    Mutant(
        "cuda-backward-tie", "csrc/cuda/tile_gemm.cuh",
        "return z > acc_t(0) ? acc_t(1) : acc_t(0);", "return z >= acc_t(0) ? acc_t(1) : acc_t(0);",
        "ties", "the CUDA training backward counts a z = 0 bit as 1",
        (f"{CUDA_BITCODES}::test_exact_zero_margins_give_bit_0",),
    ),
    Mutant(
        "cuda-straight-through-scale", "csrc/cuda/bitcodes_kernels.cuh",
        "out[e] = p * (acc_t(1) - p) * acc[m][gr * T::kVec + e] / tau;",
        "out[e] = p * (acc_t(1) - p) * acc[m][gr * T::kVec + e] / tau * acc_t(0.995);",
        "gradient scaling", "the CUDA straight-through gradient 0.5% too small",
        (f"{CUDA_BITCODES}::test_train_matches_oracle",),
    ),
    Mutant(
        "cuda-noise-subsequence", "csrc/cuda/noise.cuh",
        "at::Philox4_32 engine(seed, static_cast<uint64_t>(token), offset / 4 + static_cast<uint64_t>(group));",
        "at::Philox4_32 engine(seed, static_cast<uint64_t>(token % 64), offset / 4 + static_cast<uint64_t>(group));",
        "noise stream", "every tile of 64 tokens draws the same noise on the GPU",
        (f"{CUDA_BITCODES}::test_drawn_noise_differs_across_tokens_and_bits",),
    ),
    Mutant(
        "cuda-vq-lane-tie", "csrc/cuda/vq_cuda.cu",
        "if (vq_better_later_code(score, best[m])) {", "if (score <= best[m]) {",
        "vq ties and exact distance", "route cores skips the shared rule: equal distances seen by one thread go to the highest code",
        (f"{CUDA_VQ}::test_exact_ties_go_to_the_lowest_index",),
    ),
    Mutant(
        "cuda-vector-alignment", "csrc/cuda/tile_gemm.cuh",
        "vectors(aligned16(m_.data) && m_.cols % kV == 0)", "vectors(m_.cols % kV == 0)",
        "vector tails", "16-byte loads from a misaligned slice of x (a fault on a GPU, an abort on the emulator)",
        (f"{CUDA_TILES}::test_misaligned_inputs_match_aligned",),
    ),
    Mutant(
        "cuda-slice-edge", "csrc/cuda/tile_gemm.cuh",
        "if (vectors && i0 + kExtent <= extent_i && k0 + T::kStep <= extent_k) {",
        "if (vectors && i0 + kExtent <= extent_i && k0 < extent_k) {",
        "tile and chunk boundaries", "the last, partial slice of features is loaded as whole vectors, past the row's end",
        (f"{CUDA_TILES}::test_every_width_matches_oracle",),
    ),
    Mutant(
        "cuda-noise-run-half", "csrc/cuda/bitcodes_kernels.cuh",
        "const bool upper = (col & 2) != 0;", "const bool upper = false;",
        "noise stream", "a float64 thread's second run of 2 bits draws the first two numbers of the Philox block again",
        (f"{CUDA_TILES}::test_drawn_noise_is_the_philox_stream",),
    ),
    # route gemm: its epilogue kernels, between the ATen GEMMs
    Mutant(
        "gemm-threshold-tie", "csrc/cuda/gemm_epilogues.cuh",
        "const bool bit = z > acc_t(0);  // a tie", "const bool bit = z >= acc_t(0);  // a tie",
        "ties", "route gemm's threshold gives bit 1 at an exact-zero margin",
        (f"{CUDA_BITCODES}::test_exact_zero_margins_give_bit_0",),
    ),
    Mutant(
        "gemm-r-lo-dropped", "csrc/cuda/gemm_epilogues.cuh",
        "const op_t lo = static_cast<op_t>(scaled - static_cast<acc_t>(hi));", "const op_t lo = static_cast<op_t>(0);",
        "dtype conversion", "route gemm's backward keeps only the bf16/fp16 high part of r (no hi/lo split)",
        (f"{CUDA_BITCODES}::test_backward_rounds_once",),
    ),
    Mutant(
        "gemm-vq-tie", "csrc/cuda/vq_epilogues.cuh",
        "if (vq_better(sum, c0 + c, nearest, nearest_code)) {", "if (sum <= nearest) {",
        "vq ties and exact distance", "route gemm skips the shared rule: its argmin sends equal distances to the highest code",
        (f"{CUDA_VQ}::test_exact_ties_go_to_the_lowest_index",),
    ),
    Mutant(
        "gemm-vq-margin", "csrc/cuda/vq_epilogues.cuh",
        "const double margin = 4 * unit * reach * reach;", "const double margin = 0 * unit * reach * reach;",
        "vq ties and exact distance",
        "route gemm's argmin trusts the GEMM's rounding: an equal code in a differently rounded column wins",
        (f"{CUDA_VQ}::test_equal_codes_tie_to_the_lowest_index_however_the_gemm_rounds",),
    ),
    # ---- the binary family: binary_entropy's tables, chunks and collective; LFQ/BSQ; bit_logits ----
    Mutant(
        "entropy-half-split", "bitcodes_ext/code_tables.py",
        "lo = build_table(one[:, self.high :], zero[:, self.high :]",
        "lo = build_table(one[:, self.low :], zero[:, self.low :]",
        "binary entropy", "for an odd number of bits the low table is built from the wrong bits (and left half unwritten)",
        (f"{ENTROPY}::test_values_and_gradients_equal_the_enumeration",),
    ),
    Mutant(
        "entropy-chunk-rows", "bitcodes_ext/code_tables.py",
        "            row += rows\n", "            row = rows\n",
        "binary entropy", "the backward writes the third and later chunks' gradients over the second's rows",
        (f"{ENTROPY}::test_chunks_cover_every_token_once",),
    ),
    Mutant(
        "dispatch-ignores-preference", "bitcodes_ext/_extension.py",
        "return (preferred if preferred in usable else usable[-1]), None", "return usable[-1], None",
        "CPU dispatch", "a CPU family where a lower capability measured faster (Zen 4) loads the highest anyway",
        ("tests/test_build.py::test_a_cpu_family_where_a_lower_capability_is_faster_loads_it",), quick=True,
    ),
    Mutant(
        "entropy-zero-usage", "bitcodes_ext/entropy.py",
        "-(p * torch.where(p > 0, p, torch.ones_like(p)).log()).sum()", "-(p * p.log()).sum()",
        "binary entropy", "a code with a = 0 gives 0 * log 0 = NaN instead of contributing nothing",
        (f"{ENTROPY}::test_saturated_logits_give_finite_values_and_gradients",), quick=True,
    ),
    Mutant(
        "entropy-bit-order", "bitcodes_ext/code_tables.py",
        "shifts = torch.arange(bits - 1, -1, -1, device=like.device)", "shifts = torch.arange(bits, device=like.device)",
        "binary entropy", "the backward reads each table index's bits LSB first while the tables are MSB first",
        (f"{ENTROPY}::test_values_and_gradients_equal_the_enumeration",),
    ),
    Mutant(
        "entropy-per-bit", "bitcodes_ext/entropy.py",
        "return F.softplus(-m) + m * torch.sigmoid(-m)", "return F.softplus(-m) + m * torch.sigmoid(m)",
        "binary entropy", "the per-sample entropy of a bit takes sigmoid(|l|) for sigmoid(-|l|)",
        (f"{ENTROPY}::test_values_and_gradients_equal_the_enumeration",),
    ),
    Mutant(
        "entropy-ddp-plain-all-reduce", "bitcodes_ext/entropy.py",
        "    return all_reduce(sums), count", "    dist.all_reduce(sums.detach())\n    return sums, count",
        "binary entropy", "a plain all_reduce: each rank's gradient is only its own share of the global entropy's",
        ("tests/test_distributed.py::test_ddp_binary_entropy_is_the_full_batch_entropy",),
    ),
    Mutant(
        "lfq-temperature", "bitcodes_ext/lookup_free.py",
        "logits = (4 * self.inv_temperature * self.code_value) * z",
        "logits = (2 * self.inv_temperature * self.code_value) * z",
        "binary entropy", "LFQ's bit logits at half the softmax's temperature factor",
        (f"{LFQ}::test_training_loss_is_the_exact_entropy_of_the_codebook_softmax",), quick=True,
    ),
    Mutant(
        "lfq-spherical-value", "bitcodes_ext/lookup_free.py",
        "return self.codebook_scale / math.sqrt(self.num_bits) if self.spherical else self.codebook_scale",
        "return self.codebook_scale",
        "binary entropy", "BSQ's quantized vectors are not normalised: entries +-scale instead of +-scale / sqrt(B)",
        (f"{LFQ}::test_eval_equals_the_peer",),
    ),
    Mutant(
        "lfq-straight-through", "bitcodes_ext/lookup_free.py",
        "out = q + (z - z.detach()) if self.training else q", "out = q + 0.5 * (z - z.detach()) if self.training else q",
        "binary entropy", "LFQ's straight-through gradient is halved",
        (f"{LFQ}::test_straight_through_gradient_reaches_x_unchanged",),
    ),
    Mutant(
        "bit-logits-temperature", "bitcodes_ext/layers.py",
        "self.metric) / self.temperature", "self.metric) * self.temperature",
        "binary entropy", "Bitcodes.bit_logits multiplies by the temperature instead of dividing",
        ("tests/test_bit_logits.py::test_values_are_the_margin_over_the_temperature",),
    ),
    # ---- csrc/cpu/output_memory.cpp: the cache of freed output blocks ----
    Mutant(
        "cache-hands-a-block-out-twice", "csrc/cpu/output_memory.cpp",
        "      unlink(block);\n", "",
        "output cache", "a cached block stays in the cache when taken: two live outputs share memory",
        (f"{OUTPUT_CACHE}::test_live_outputs_never_share_memory",), quick=True,
    ),
    Mutant(
        "cache-takes-a-smaller-block", "csrc/cpu/output_memory.cpp",
        "if (block->bytes != bytes) continue;", "if (block->bytes < bytes / 4) continue;",
        "output cache", "an output takes a cached block smaller than itself",
        (f"{OUTPUT_CACHE}::test_a_block_serves_only_outputs_of_its_size",),
    ),
    Mutant(
        "cache-ignores-its-limit", "csrc/cpu/output_memory.cpp",
        "while (cached_bytes_ > size_t(limit_bytes))", "while (cached_bytes_ > size_t(2 * limit_bytes))",
        "output cache", "the cache holds up to twice its limit",
        (f"{OUTPUT_CACHE}::test_the_cache_keeps_to_its_limit",),
    ),
    Mutant(
        "cache-miscounts-a-taken-block", "csrc/cpu/output_memory.cpp",
        "    cached_bytes_ -= block->bytes;\n", "",
        "output cache", "a block taken from the cache still counts towards its bytes (and its limit)",
        (f"{OUTPUT_CACHE}::test_a_freed_output_serves_the_next_one_and_is_overwritten",),
    ),
    Mutant(
        "cache-evicts-the-newest", "csrc/cpu/output_memory.cpp",
        "Block* old = oldest_;", "Block* old = newest_;",
        "output cache", "past its limit the cache gives back the block just freed instead of the oldest",
        (f"{OUTPUT_CACHE}::test_past_its_limit_the_cache_gives_back_the_oldest_block",),
    ),
)
