"""The build itself: in CI the compiled kernels must be there, for every capability this CPU
supports; the CPU probe, the choice of capability and its errors; a quiet import."""

import ast
import os
import pathlib
import platform
import struct
import subprocess
import sys

import pytest
import torch

import bitcodes_ext
from bitcodes_ext import _extension
from conftest import IN_CI

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The directory the imported package lives in (the tree, or a copy of it under `make sanitize`).
PACKAGE_PARENT = pathlib.Path(bitcodes_ext.__file__).resolve().parents[1]
CAPABILITIES = ["DEFAULT", "AVX2", "AVX512"]
X86 = platform.machine().lower() in ("x86_64", "amd64")


def test_backend_info_reports_the_build():
    info = bitcodes_ext.backend_info()
    assert info["torch"] == torch.__version__
    assert isinstance(info["cpu_kernels"], bool) and isinstance(info["cuda_kernels"], bool)
    if IN_CI:
        assert info["cpu_kernels"], f"CI built no CPU kernels: {info['load_error']}"
    if IN_CI and torch.version.cuda and os.environ.get("BITCODES_CUDA") != "0":
        # CI has the CUDA toolkit and a CUDA build of torch: the .cu sources must have compiled
        # (unless the build was told to skip them, as tools/mutants.py's CPU-only builds are).
        assert info["cuda_kernels"], f"CI built no CUDA kernels: {info['load_error']}"
    if info["cpu_kernels"]:
        assert info["load_error"] is None
        assert info["built_with_torch"] == torch.__version__  # what a carried build is checked by
        assert info["cpu_capability"] in info["cpu_capabilities_built"]
        assert info["cpu_capability"] in info["cpu_capabilities_supported"]
    else:
        assert info["cpu_capability"] is None and info["load_error"]


def test_the_capability_asked_for_or_the_best_is_loaded(native):
    info = bitcodes_ext.backend_info()
    if IN_CI:  # a CI build compiles every capability of its architecture
        assert info["cpu_capabilities_built"] == (CAPABILITIES if X86 else ["DEFAULT"])
    asked = os.environ.get("BITCODES_CPU_CAPABILITY")
    usable = [c for c in info["cpu_capabilities_built"] if c in info["cpu_capabilities_supported"]]
    preferred = _extension.PREFERRED_CAPABILITY.get(_extension.cpu_family())
    assert info["cpu_capability"] == (asked.upper() if asked else preferred if preferred in usable else usable[-1])
    assert torch._C._dispatch_has_kernel_for_dispatch_key("bitcodes_ext::vq", "CPU")


def test_probe_agrees_with_the_kernel_flags_and_proc_cpuinfo(native):
    required = _extension._C.required_features()
    assert sorted(required) == sorted(CAPABILITIES) and required["DEFAULT"] == []
    # Every feature a capability's flags enable is checked before that build may load.
    flags = _setup_cpu_flags()
    for capability, features in required.items():
        assert {flag.removeprefix("-m") for flag in flags[capability]} <= set(features), capability
    assert set(required["AVX2"]) <= set(required["AVX512"])  # -mavx512f implies -mavx2
    supported = bitcodes_ext.backend_info()["cpu_capabilities_supported"]
    if not X86:
        assert supported == ["DEFAULT"]
        return
    cpu_flags = set(next(line for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split(":")[1].split())
    assert supported == [c for c in CAPABILITIES if set(required[c]) <= cpu_flags]


FATBIN_MAGIC = 0xBA55ED50


def fatbinary_archs(data):
    """{"elf": {"80", ...}, "ptx": {"90"}} from the CUDA fatbinaries embedded in a library's bytes.

    Read directly (cuobjdump --list-elf/--list-ptx say the same, but the CI image's toolkit has no
    cuobjdump): a fatbinary is a 16-byte header (magic, version 1, header size 16, payload size),
    then entries of a header (kind 1 = PTX, 2 = ELF at offset 0; its size at 4; the payload's at
    8; the SM number at 28) and a payload. An entry not of kind 1 or 2 fails, so a misread fails."""
    found = {"elf": set(), "ptx": set()}
    start = data.find(struct.pack("<I", FATBIN_MAGIC))
    while start >= 0:
        version, header, size = struct.unpack_from("<HHQ", data, start + 4)
        if version == 1 and header == 16:
            entry, end = start + header, start + header + size
            while entry < end:
                kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", data, entry)
                assert kind in (1, 2), f"fatbinary entry of unknown kind {kind} at byte {entry}"
                found["ptx" if kind == 1 else "elf"].add(str(struct.unpack_from("<I", data, entry + 28)[0]))
                entry += entry_header + entry_size
        start = data.find(struct.pack("<I", FATBIN_MAGIC), start + 4)
    return found


def _fatbinary(*entries):
    """A fatbinary of (kind, sm) entries with 8-byte payloads, as nvcc lays them out."""
    body = b"".join(struct.pack("<HHIQ12xI", kind, 0, 32, 8, sm) + b"payload!" for kind, sm in entries)
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def test_fatbinary_reader():
    data = b"junk" + _fatbinary((2, 80), (2, 90), (1, 90)) + b"more" + _fatbinary((2, 100))
    assert fatbinary_archs(data) == {"elf": {"80", "90", "100"}, "ptx": {"90"}}
    assert fatbinary_archs(b"no fatbinary here") == {"elf": set(), "ptx": set()}
    with pytest.raises(AssertionError, match="unknown kind"):
        fatbinary_archs(_fatbinary((3, 80)))


def _arch_numbers(archs):
    """"8.0,9.0+PTX" -> ({"80", "90"}, {"90"}): the ELF and the PTX architectures."""
    elf, ptx = set(), set()
    for arch in archs.split(","):
        number = arch.split("+")[0].replace(".", "")
        elf.add(number)
        if arch.endswith("+PTX"):
            ptx.add(number)
    return elf, ptx


def test_arch_numbers():
    assert _arch_numbers("8.0,9.0+PTX") == ({"80", "90"}, {"90"})


def test_fatbinary_holds_the_archs_of_the_build():
    # Where the CUDA kernels were built, the extension holds machine code (ELF) for every
    # architecture the build targeted; CI's build (no GPU visible) targets sm_80 and sm_90.
    info = bitcodes_ext.backend_info()
    if not info["cuda_kernels"]:
        pytest.skip("the CUDA kernels were not built (test_backend_info_reports_the_build fails CI for that)")
    assert info["cuda_archs"], "the CUDA build did not record its TORCH_CUDA_ARCH_LIST"
    elf, ptx = _arch_numbers(info["cuda_archs"])
    if IN_CI:
        assert {"80", "90"} <= elf, f"CI must build sm_80 and sm_90, built {info['cuda_archs']}"
    library = _extension._C.__file__
    listed = fatbinary_archs(pathlib.Path(library).read_bytes())
    assert elf <= listed["elf"], f"{library} holds ELF for {sorted(listed['elf'])}, the build targeted {sorted(elf)}"
    assert ptx <= listed["ptx"], f"{library} holds PTX for {sorted(listed['ptx'])}, the build targeted {sorted(ptx)}"


def _setup_cpu_flags():
    """setup.py's CPU_FLAGS, read without running setup.py."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    assignment = next(node for node in tree.body if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CPU_FLAGS")
    return ast.literal_eval(assignment.value)


@pytest.fixture
def chooser(monkeypatch):
    """_extension's choice of a capability, for a pretend CPU and build."""

    def choose(asked, supported, built):
        monkeypatch.setattr(_extension, "SUPPORTED_CPU_CAPABILITIES", tuple(supported))
        monkeypatch.setattr(_extension, "BUILT_CPU_CAPABILITIES", tuple(built))
        if asked is None:
            monkeypatch.delenv("BITCODES_CPU_CAPABILITY", raising=False)
        else:
            monkeypatch.setenv("BITCODES_CPU_CAPABILITY", asked)
        return _extension._choose_cpu_capability()

    return choose


def test_choice_of_capability(native, chooser, monkeypatch):
    monkeypatch.setattr(_extension, "cpu_family", lambda: ("GenuineIntel", 6))
    everything = CAPABILITIES
    assert chooser(None, everything, everything) == ("AVX512", None)
    assert chooser(None, ["DEFAULT", "AVX2"], everything) == ("AVX2", None)  # an AVX2 machine
    assert chooser(None, everything, ["DEFAULT", "AVX2"]) == ("AVX2", None)
    assert chooser("avx2", everything, everything) == ("AVX2", None)
    assert chooser(" Default ", everything, everything) == ("DEFAULT", None)
    capability, reason = chooser(None, ["DEFAULT", "AVX2"], ["AVX512"])
    assert capability is None and reason == "no CPU kernels built for this CPU (this CPU supports: default, avx2; built: avx512)"


def test_a_cpu_family_where_a_lower_capability_is_faster_loads_it(native, chooser, monkeypatch):
    everything = CAPABILITIES
    monkeypatch.setattr(_extension, "cpu_family", lambda: ("AuthenticAMD", 25))  # Zen 4
    assert chooser(None, everything, everything) == ("AVX2", None)
    assert chooser(None, everything, ["DEFAULT", "AVX512"]) == ("AVX512", None)  # AVX2 not built
    assert chooser("avx512", everything, everything) == ("AVX512", None)  # asking still wins
    monkeypatch.setattr(_extension, "cpu_family", lambda: ("AuthenticAMD", 26))  # Zen 5: full-width AVX-512
    assert chooser(None, everything, everything) == ("AVX512", None)
    monkeypatch.setattr(_extension, "cpu_family", lambda: None)  # unknown: the highest
    assert chooser(None, everything, everything) == ("AVX512", None)


def test_cpu_family_reads_this_cpu(native):
    family = _extension.cpu_family()
    if not pathlib.Path("/proc/cpuinfo").exists():
        assert family is None  # no preference where the family cannot be read
        return
    vendor, number = family
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    assert f"vendor_id\t: {vendor}" in cpuinfo and f"cpu family\t: {number}" in cpuinfo


@pytest.mark.parametrize(
    "asked,supported,built,message",
    [
        ("avx512", ["DEFAULT", "AVX2"], CAPABILITIES, "'avx512': this CPU does not support it (this CPU supports: default, avx2; built: default, avx2, avx512)"),
        ("AVX2", CAPABILITIES, ["DEFAULT"], "'AVX2': it was not built (this CPU supports: default, avx2, avx512; built: default)"),
        ("sse4", CAPABILITIES, CAPABILITIES, "'sse4': expected one of default, avx2, avx512"),
    ],
)
def test_asking_for_a_capability_that_cannot_load_is_an_error(native, chooser, asked, supported, built, message):
    with pytest.raises(ValueError) as error:
        chooser(asked, supported, built)
    assert str(error.value) == f"BITCODES_CPU_CAPABILITY={message}"


def run_python(code, **env):
    """`python -c code` in a fresh process importing the same package as this one."""
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], cwd=PACKAGE_PARENT, env=environment, capture_output=True, text=True, timeout=300)


def test_import_prints_nothing(native):
    result = run_python("import bitcodes_ext, torch; bitcodes_ext.Bitcodes(8, 4)(torch.randn(3, 8))")
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


def test_a_misspelt_capability_fails_the_import(native):
    result = run_python("import bitcodes_ext", BITCODES_CPU_CAPABILITY="avx1024")
    assert result.returncode != 0
    assert "ValueError: BITCODES_CPU_CAPABILITY='avx1024': expected one of default, avx2, avx512" in result.stderr


def test_benchmark_harness_imports_quietly():
    # torch.utils.benchmark imports cpp_extension, whose CUDA_HOME message the harness drops.
    result = run_python(f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import harness")
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")

