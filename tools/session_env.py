"""What the GPU checklist (tools/gpu_session.sh) needs from the machine it runs on.

    python tools/session_env.py packages --site DIR [--gpu] [--report FILE]
        the interpreter, torch, the GPU (required with --gpu), and the Python packages: exits 1
        if a required one is missing, or if the carried wheels' packages do not come from DIR
    python tools/session_env.py kernels (--cuda | --emulator LIBRARY) [--report FILE]
        bitcodes_ext's build: exits 1 unless it has CUDA kernels compiled against this torch with
        machine code for this GPU (--cuda), or CPU kernels and a CUDA emulator library that
        loads (--emulator)

Each prints what it found; --report appends the same lines to FILE (the session's summary).
"""

import argparse
import glob
import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Module: what needs it. The carried wheels (tools/wheels) must provide the first two.
CARRIED = {"bitcodes_pytorch": "the reference (tests and benchmark)", "einops": "bitcodes_pytorch"}
REQUIRED = {"torch": "everything", "numpy": "torch.utils.benchmark", "pytest": "the tests", **CARRIED}
# Missing ones change what runs, not whether it can: the script looks for them itself.
MIN_FREE_DISK_GIB = 5
MIN_FREE_GPU_GIB = 60  # bench_bitcodes at 2^20 x 1024 and bench_vq's largest size, with room
OPTIONAL = {
    "xdist": "pytest -n (the tests run serially without it)",
    "pytest_timeout": "pytest --timeout (a hung test then waits for the step's time limit)",
    "triton": "torch.compile(reference) on a GPU (its rows are skipped without it)",
    "tqdm": "the benchmark's progress bar (only on a terminal)",
    "scipy": "bench_vq.py on the CPU",
    "faiss": "bench_vq.py on the CPU",
}


def where(module):
    spec = importlib.util.find_spec(module)
    return None if spec is None else (spec.origin or (list(spec.submodule_search_locations or []) or ["?"])[0])


def packages(args, say):
    import torch
    from torch.utils import cpp_extension

    say(f"python {platform.python_version()} at {sys.executable}")
    say(f"torch {torch.__version__} (CUDA {torch.version.cuda}), ninja {'yes' if cpp_extension.is_ninja_available() else 'NO: serial build'}")
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1] if nvcc else "none"
    say(f"nvcc: {nvcc or 'not found'} ({version})")
    failed = []
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    say(f"Python.h: {headers if os.path.exists(headers) else 'MISSING (a build here would fail)'}")
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    say(f"pip: {pip.stdout.strip() if pip.returncode == 0 else 'MISSING (the carried wheels cannot be installed)'}")
    free_disk = shutil.disk_usage(ROOT).free / 2**30
    say(f"free disk: {free_disk:.0f} GiB at {ROOT}")
    if free_disk < MIN_FREE_DISK_GIB:
        failed.append(f"{MIN_FREE_DISK_GIB} GiB of free disk (a build and the benchmarks' files)")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        say(f"GPU: {props.name}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible")
        free_gpu = torch.cuda.mem_get_info()[0] / 2**30
        say(f"free GPU memory: {free_gpu:.0f} GiB")
        if free_gpu < MIN_FREE_GPU_GIB:
            failed.append(f"{MIN_FREE_GPU_GIB} GiB of free GPU memory (the largest benchmark sizes; another process holds it)")
    else:
        say("GPU: none visible")
        if args.gpu:
            failed.append("a GPU (torch.cuda.is_available() is False; off a GPU use --dry-run)")
    for module, needed_by in {**REQUIRED, **OPTIONAL}.items():
        found = where(module)
        required = module in REQUIRED
        say(f"  {module:16} {found or 'MISSING'}  ({'required' if required else 'optional'}: {needed_by})")
        if required and found is None:
            failed.append(module)
        elif module in CARRIED and found is not None and not os.path.realpath(found).startswith(os.path.realpath(args.site) + os.sep):
            failed.append(f"{module} from the carried wheels (it comes from {found}, not {args.site})")
    return failed


def kernels(args, say):
    import bitcodes_ext

    info = bitcodes_ext.backend_info()
    say(f"bitcodes_ext from {os.path.dirname(bitcodes_ext.__file__)}: {info}")
    failed = []
    if args.cuda:
        import torch

        if not info["cuda_kernels"]:
            failed.append(f"CUDA kernels ({info['load_error'] or 'built without them'})")
        if info["built_with_torch"] != torch.__version__:
            failed.append(f"a build against this torch {torch.__version__} (it was built against {info['built_with_torch']})")
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            if f"{major}.{minor}" not in (info["cuda_archs"] or "").replace("+PTX", "").split(","):
                failed.append(f"machine code for sm_{major}{minor} (the build has {info['cuda_archs']})")
        cuobjdump = shutil.which("cuobjdump")
        if cuobjdump is None:
            say("cuobjdump not found: which GPUs the build holds machine code for is not listed")
        for library in glob.glob(os.path.join(os.path.dirname(bitcodes_ext.__file__), "_C*.so")) if cuobjdump else []:
            elves = subprocess.run([cuobjdump, "--list-elf", library], capture_output=True, text=True).stdout.split()
            say(f"{os.path.basename(library)}: machine code for {sorted({e.rsplit('.', 2)[-2] for e in elves if '.sm_' in e})}")
    else:
        if not info["cpu_kernels"]:
            failed.append(f"CPU kernels ({info['load_error']})")
        spec = importlib.util.spec_from_file_location("emulated", os.path.join(ROOT, "tools", "cuda_emulator", "emulated.py"))
        emulated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(emulated)
        emulated.install(args.emulator)
        say(f"CUDA emulator: {args.emulator} loaded")
    return failed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("packages")
    p.add_argument("--site", required=True, help="where the carried wheels were installed")
    p.add_argument("--gpu", action="store_true", help="fail without a visible GPU")
    k = sub.add_parser("kernels")
    target = k.add_mutually_exclusive_group(required=True)
    target.add_argument("--cuda", action="store_true")
    target.add_argument("--emulator", metavar="LIBRARY")
    for command in (p, k):
        command.add_argument("--report", help="append what is printed to this file too")
    args = parser.parse_args()

    lines = []

    def say(line):
        print(line, flush=True)
        lines.append(line)

    failed = (packages if args.what == "packages" else kernels)(args, say)
    for missing in failed:
        say(f"MISSING: {missing}")
    if args.report:
        with open(args.report, "a") as f:
            f.write("".join(f"  {line}\n" for line in lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
