"""The package as a user gets it (`make wheel-test`; marked `wheel`, so the main run leaves it out):
`python -m build --no-isolation` makes an sdist, which must hold every file the compilers read,
and a wheel; the wheel goes into a fresh venv that sees torch (a .pth naming this environment's
site-packages) but neither the source tree nor the editable install, and passes a smoke test
there, from a folder outside the tree, on every CPU capability this CPU supports.

The wheel is built from the tree, in the build directories of `make install` (build/<module>/,
setup.py): ninja finds every object current, so no source is compiled a second time for the same
target. A wheel built from the sdist would compile the same sources with the same flags; what it
could add, a file missing from the sdist, test_sdist_holds_every_file_the_compilers_read checks
directly, from ninja's record of what each object read."""

import email
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile

import pytest
import torch

import bitcodes_ext

pytestmark = pytest.mark.wheel

ROOT = pathlib.Path(__file__).resolve().parents[1]
HERE = pathlib.Path(__file__).resolve().parent
VERSION = bitcodes_ext.__version__
# What a build compiles on this architecture (an x86-64 build holds every capability, whatever
# this CPU supports), and what this CPU can run.
BUILT = ["DEFAULT", "AVX2", "AVX512"] if platform.machine().lower() in ("x86_64", "amd64") else ["DEFAULT"]
SUPPORTED = bitcodes_ext.backend_info()["cpu_capabilities_supported"] or ["DEFAULT"]


def clean_env(**extra):
    """The environment of a user's shell: none of ours that changes a build or an import."""
    ours = ("BITCODES_CPU_CAPABILITY", "BITCODES_BUILD_CPU_CAPABILITIES", "PYTHONPATH", "BITCODES_CUDA_EMULATOR")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    return {**env, **extra}


def run(*command, cwd, env=None, timeout=3600):
    result = subprocess.run(command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return result


# The build directories of the compiled modules (setup.py's BuildPerExtension).
BUILD_DIRS = sorted((ROOT / "build").glob("bitcodes_ext.*"))


def objects():
    """{object file: mtime} in the modules' build directories."""
    return {path: path.stat().st_mtime_ns for directory in BUILD_DIRS for path in directory.rglob("*.o")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """(sdist, wheel, the objects the wheel's build compiled again)."""
    assert BUILD_DIRS, "no build/bitcodes_ext.* directories: run `make install` first"
    out = tmp_path_factory.mktemp("dist")
    before = objects()
    for kind in ("--sdist", "--wheel"):
        run(sys.executable, "-m", "build", "--no-isolation", kind, "--outdir", str(out), str(ROOT), cwd=ROOT)
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(out.iterdir())
    recompiled = sorted(str(path.relative_to(ROOT)) for path, mtime in objects().items() if before.get(path) != mtime)
    return sdists[0], wheels[0], recompiled


def test_the_wheel_compiles_nothing_again(dist):
    *_, recompiled = dist
    assert not recompiled, f"building the wheel compiled {recompiled} again: is `make install` current, built in this environment?"


def compiler_inputs():
    """The files of this tree that the compilers read for the modules of `make install`: ninja's
    dependency log of each build directory (headers included), relative to ROOT."""
    ninja = shutil.which("ninja", path=os.path.dirname(sys.executable)) or shutil.which("ninja")
    inside = []
    for directory in BUILD_DIRS:
        listing = run(ninja, "-C", str(directory), "-t", "deps", cwd=ROOT).stdout
        paths = [pathlib.Path(line.strip()) for line in listing.splitlines() if line.startswith(" ") and line.strip()]
        inside += [p.resolve() for p in paths if p.is_absolute() and p.resolve().is_relative_to(ROOT)]
    ignored = (ROOT / ".venv", ROOT / "build")
    return {str(p.relative_to(ROOT)) for p in inside if not any(p.is_relative_to(d) for d in ignored)}


def test_sdist_holds_every_file_the_compilers_read(dist):
    sdist, *_ = dist
    read = compiler_inputs()
    # Not vacuous: the log names the sources of every kind and the headers they include.
    assert {"csrc/bitcodes.cpp", "csrc/cpu/vq_cpu.cpp", "csrc/checks.h", "csrc/cpu/microkernels.h"} <= read, sorted(read)
    if torch.version.cuda and bitcodes_ext.backend_info()["cuda_kernels"]:
        assert {"csrc/cuda/vq_cuda.cu", "csrc/cuda/route.h", "csrc/cuda/tile_gemm.cuh"} <= read, sorted(read)
    with tarfile.open(sdist) as archive:
        top = f"bitcodes_ext-{VERSION}/"
        names = {name.removeprefix(top) for name in archive.getnames()}
    assert not read - names, f"the sdist lacks {sorted(read - names)}, which the build reads"


def test_sdist_holds_every_source_file(dist):
    sdist, *_ = dist
    tracked = run("git", "ls-files", "csrc", cwd=ROOT).stdout.split()
    assert tracked, "no csrc files tracked"
    with tarfile.open(sdist) as archive:
        top = f"bitcodes_ext-{VERSION}/"
        names = {name.removeprefix(top) for name in archive.getnames()}
    missing = sorted(set(tracked + ["setup.py", "pyproject.toml", "README.md", "bitcodes_ext/__init__.py"]) - names)
    assert not missing, f"the sdist lacks {missing}"


def test_wheel_holds_every_compiled_module_and_pins_torch(dist):
    _, wheel, _ = dist
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_string(archive.read(f"bitcodes_ext-{VERSION}.dist-info/METADATA").decode())
    modules = sorted(name.split("/")[1].split(".")[0] for name in names if name.endswith(".so"))
    assert modules == sorted(["_C"] + [f"_cpu_{c.lower()}" for c in BUILT])
    assert not [name for name in names if not name.startswith(("bitcodes_ext/", f"bitcodes_ext-{VERSION}.dist-info/"))]
    assert metadata["Version"] == VERSION
    requires = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert requires == [f"torch=={torch.__version__.split('+')[0]}"]  # the torch it was compiled against


@pytest.fixture(scope="module")
def user_venv(dist, tmp_path_factory):
    """A fresh venv that sees this environment's torch, with the wheel installed; (python, site-packages)."""
    root = tmp_path_factory.mktemp("user")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    site_packages = pathlib.Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=root).stdout.strip())
    # A plain path line: Python adds the folder to sys.path but does not run the .pth files in
    # it, so the editable install's finder stays off (checked below).
    (site_packages / "dev_torch.pth").write_text(sysconfig.get_path("purelib") + "\n")
    probe = "import importlib.util, torch; print(importlib.util.find_spec('bitcodes_ext'))"
    assert run(str(python), "-c", probe, cwd=root).stdout.strip() == "None"
    _, wheel, _ = dist
    # --no-deps: torch is there already (through the .pth); the pin is checked above.
    run(str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel), cwd=root)
    return python, site_packages


@pytest.mark.parametrize("capability", SUPPORTED)
def test_installed_wheel_smoke_test(user_venv, tmp_path, capability):
    python, site_packages = user_venv
    for name in ("wheel_smoke.py", "oracle.py"):
        shutil.copy(HERE / name, tmp_path / name)
    result = run(str(python), "wheel_smoke.py", str(site_packages), capability, *BUILT, cwd=tmp_path, env=clean_env(BITCODES_CPU_CAPABILITY=capability))
    assert result.stderr == "", result.stderr  # an import and a run on the kernels print nothing else
    assert result.stdout.startswith(f"wheel smoke test passed on {capability}: {site_packages}")


def test_building_without_torch_says_what_to_do(tmp_path):
    """What pip runs first ("Getting requirements to build wheel": setup.py) in an environment
    without torch, as pip's isolated build environment is, prints what to do instead."""
    venv.create(tmp_path / "venv", with_pip=True)  # Python's own pip and setuptools, no torch
    python = str(tmp_path / "venv" / "bin" / "python")
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    # Python 3.11's ensurepip installs setuptools too (the backend pip runs here); 3.12's does not.
    assert subprocess.run([python, "-c", "import setuptools"], capture_output=True).returncode == 0
    result = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-build-isolation", str(ROOT)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=clean_env(),
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "this build cannot import torch" in output and "pip install --no-build-isolation ." in output, output
