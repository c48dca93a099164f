#!/usr/bin/env python3
"""Mutation testing: plants each bug of tools/mutant_catalogue.py in a copy of this checkout, one
at a time, rebuilds what it touched, runs the tests there, and reports which ones the suite
caught (killed) and which it missed (survived: a missing test).

    python tools/mutants.py                 # every mutant (make mutants); writes tests/mutants-report.md
    python tools/mutants.py --quick         # the fast subset, each against its own tests (make mutants-quick, CI)
    python tools/mutants.py --only a,b      # some mutants (report in build/mutants/report.md)
    python tools/mutants.py --resume        # the whole catalogue, keeping what a stopped run killed
    python tools/mutants.py --list | --check

How it runs:
- The copy, build/mutants/tree, holds this checkout's tracked files and its untracked ones that
  git does not ignore. A file is rewritten only where it differs, so the copy's build directory
  stays valid from run to run and ninja recompiles only what a mutant touches. A mutated file is
  restored right after its tests.
- The CPU kernels are built in the copy for one capability, the best this CPU has
  (BITCODES_CUDA=0 BITCODES_BUILD_CPU_CAPABILITIES=<it> python setup.py build_ext --inplace), and
  the tests load it (BITCODES_CPU_CAPABILITY=<it>). Mutants of
  csrc/cuda/ rebuild the CUDA emulator in the copy (tools/cuda_emulator/build.py) and run
  tests/test_cuda_*.py on it; Python mutants need no rebuild.
- The tests run in the copy with pytest -x: the mutant's own tests first, then (not in quick
  mode) the rest of the suite, broad and fast files first. The child process checks that it
  imported the copy's bitcodes_ext rather than this checkout's editable install; CI=1 is set, so
  kernels that fail to load fail the tests instead of skipping them.
- First the same tests run on the unmutated copy (the baseline): if they fail, nothing is
  reported as killed.
"""

import argparse
import datetime
import fcntl
import os
import pathlib
import platform
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cpu_capabilities  # noqa: E402
from mutant_catalogue import COVERS, MUTANTS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutants"
REPORT = ROOT / "tests" / "mutants-report.md"

# The CPU suite in the order a mutant's tests continue with: broad, fast files first, the slow
# ones (processes, training runs, soak) last. Test files not named here run after these.
SUITE_ORDER = [
    "tests/test_kernels.py",
    "tests/test_ties.py",
    "tests/test_reference_package.py",
    "tests/test_vq.py",
    "tests/test_layouts.py",
    "tests/test_ops.py",
    "tests/test_errors.py",
    "tests/test_bits.py",
    "tests/test_quantizer.py",
    "tests/test_fuzz.py",
    "tests/test_build.py",
    "tests/test_readme.py",
    "tests/test_determinism.py",
    "tests/test_example.py",
    "tests/test_distributed.py",
]
CUDA_SUITE = ["tests/test_cuda_bitcodes.py", "tests/test_cuda_vq.py"]
# Checks the catalogue against the sources, which a mutant has just changed: it would fail for
# every mutant, whatever the rest of the suite caught.
NOT_IN_RUNS = {"tests/test_mutant_catalogue.py"}

# Runs in the copy: refuses to test anything but the copy's package, then runs pytest.
CHILD = """
import os, sys
tree = os.path.realpath(os.environ["MUTANTS_TREE"])
import bitcodes_ext
where = os.path.realpath(bitcodes_ext.__file__)
if not where.startswith(tree + os.sep):
    print(f"mutants: imported bitcodes_ext from {where}, not from the copy {tree}", flush=True)
    sys.exit(97)
if os.environ.get("MUTANTS_NEED_KERNELS") and not bitcodes_ext.backend_info()["cpu_kernels"]:
    print(f"mutants: the copy's kernels did not load: {bitcodes_ext.backend_info()['load_error']}", flush=True)
    sys.exit(98)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""
NOT_THE_COPY, NO_KERNELS = 97, 98




def cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def source_files():
    """This checkout's tracked files and its untracked, not ignored ones (what a commit would hold)."""
    names = git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sorted(n for n in names if n and (ROOT / n).is_file() and not (ROOT / n).is_symlink())


def write_atomically(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Tree:
    """The mutable copy of the checkout and what has been built in it."""

    def __init__(self, work, capability):
        self.work = work
        self.path = work / "tree"
        self.capability = capability
        self.logs = work / "logs"
        self.cpu_stale = True  # the copy's compiled kernels may not match its sources
        self.emulator = None  # path of the emulator library once built and current

    def sync(self):
        manifest = self.work / "manifest"
        old = set(manifest.read_text().split("\n")) if manifest.exists() else set()
        files = source_files()
        for name in files:
            src, dst = ROOT / name, self.path / name
            data = src.read_bytes()
            if not dst.exists() or dst.read_bytes() != data:
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(data)
        for name in old - set(files) - {""}:
            (self.path / name).unlink(missing_ok=True)
        write_atomically(manifest, "\n".join(files))
        self.logs.mkdir(parents=True, exist_ok=True)

    def env(self, **extra):
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(self.path),
            PYTHONDONTWRITEBYTECODE="1",  # a restored file must never run from a mutant's .pyc
            CI="1",
            BITCODES_CUDA="0",
            BITCODES_BUILD_CPU_CAPABILITIES=self.capability,
            BITCODES_CPU_CAPABILITY=self.capability,
            MUTANTS_TREE=str(self.path),
        )
        env.pop("BITCODES_CUDA_EMULATOR", None)
        env.setdefault("MAX_JOBS", str(os.cpu_count() or 1))  # compile jobs: ninja's default is cores + 2
        env.update(extra)
        return env

    def _run(self, cmd, log, timeout, env=None):
        """Runs cmd in the copy in a process group of its own, so that a timeout or an interrupt
        also ends what it started (compilers, DDP workers); rc None on timeout."""
        start = time.monotonic()
        with open(log, "w") as out:
            child = subprocess.Popen(cmd, cwd=self.path, env=env or self.env(), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            try:
                rc = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                if child.poll() is None or rc is None:
                    try:
                        os.killpg(child.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    child.wait()
        return rc, time.monotonic() - start

    def build_cpu(self, log_name):
        log = self.logs / f"{log_name}.build.log"
        rc, seconds = self._run([sys.executable, "setup.py", "build_ext", "--inplace"], log, timeout=3600)
        self.cpu_stale = rc != 0
        return rc == 0, seconds, log

    def build_emulator(self, log_name):
        log = self.logs / f"{log_name}.emulator.log"
        rc, seconds = self._run([sys.executable, "tools/cuda_emulator/build.py"], log, timeout=3600)
        lines = log.read_text().strip().splitlines()
        self.emulator = lines[-1].strip() if rc == 0 and lines else None
        return self.emulator is not None, seconds, log

    def run_tests(self, log_name, targets, *, emulated, timeout):
        log = self.logs / f"{log_name}.tests.log"
        # --keep-duplicates: else pytest folds the mutant's own tests into their files' later
        # arguments, and they no longer run first.
        args = ["-x", "-v", "--tb=short", "--keep-duplicates", "-p", "no:cacheprovider", "-rfE"]
        extra = {"MUTANTS_NEED_KERNELS": "1"}
        if emulated:
            args += ["-m", "not real_gpu"]
            extra["BITCODES_CUDA_EMULATOR"] = self.emulator
        rc, seconds = self._run([sys.executable, "-c", CHILD, *args, *targets], log, timeout, self.env(**extra))
        return rc, seconds, log


def first_failure(log):
    """The node id of the first failing test in a pytest log, or None."""
    text = log.read_text(errors="replace")
    found = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", text, flags=re.M)  # ids may hold spaces
    return found.group(1) if found else None


def last_started(log):
    """The test that was running when the process died (pytest -v prints its id first)."""
    ids = re.findall(r"^(tests/\S+::\S+)", log.read_text(errors="replace"), flags=re.M)
    return ids[-1] if ids else "?"


def suite_files(emulated):
    if emulated:
        return list(CUDA_SUITE)
    present = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py"))
    cpu = [p for p in present if not pathlib.Path(p).name.startswith("test_cuda_") and p not in NOT_IN_RUNS]
    return [p for p in SUITE_ORDER if p in cpu] + [p for p in cpu if p not in SUITE_ORDER]


def targets_for(mutant, quick):
    emulated = mutant.kind == "cuda"
    if quick:
        return list(mutant.first)
    first = list(mutant.first)
    return first + [f for f in suite_files(emulated) if f not in first]


def check_catalogue(root=ROOT):
    """Problems with the catalogue against the files under `root` (empty when it is sound)."""
    problems, names = [], set()
    for m in MUTANTS:
        if m.name in names:
            problems.append(f"{m.name}: duplicate name")
        names.add(m.name)
        if m.covers not in COVERS:
            problems.append(f"{m.name}: covers {m.covers!r}, not one of COVERS")
        if m.old == m.new:
            problems.append(f"{m.name}: old == new")
        path = root / m.path
        if not path.is_file():
            problems.append(f"{m.name}: no file {m.path}")
            continue
        count = path.read_text().count(m.old)
        if count != 1:
            problems.append(f"{m.name}: {m.old!r} occurs {count} times in {m.path}, not once")
        for target in m.first:
            if not (root / target.split("::")[0]).is_file():
                problems.append(f"{m.name}: no test file {target}")
    return problems


def run_order(mutants):
    """Python mutants first (no rebuild), then the CPU ones by file (each rebuild also restores the
    previous file), then CUDA."""
    rank = {"python": 0, "cpu": 1, "cuda": 2}
    return sorted(mutants, key=lambda m: (rank[m.kind], m.path))


def outcome(rc, log):
    if rc is None:
        return "killed", f"timeout in {last_started(log)}"
    if rc == 0:
        return "survived", ""
    if rc == NOT_THE_COPY:
        return "error", "imported bitcodes_ext from outside the copy"
    if rc == NO_KERNELS:
        return "error", "the copy's kernels did not load"
    failed = first_failure(log)
    if failed:
        return "killed", failed
    if rc < 0:
        return "killed", f"crashed (signal {-rc}) in {last_started(log)}"
    return "error", f"pytest exit code {rc} (see {log.relative_to(ROOT)})"


def baseline(tree, mutants, quick, timeout):
    """Builds the unmutated copy and runs every test the mutants will use; returns the failures."""
    problems = []
    ok, seconds, log = tree.build_cpu("baseline")
    print(f"baseline: CPU kernels built for {tree.capability} in {seconds:.0f} s", flush=True)
    if not ok:
        return [f"the unmutated copy does not build (see {log.relative_to(ROOT)})"]
    for emulated in (False, True):
        group = [m for m in mutants if (m.kind == "cuda") == emulated]
        if not group:
            continue
        if emulated:
            ok, seconds, log = tree.build_emulator("baseline")
            print(f"baseline: CUDA emulator built in {seconds:.0f} s", flush=True)
            if not ok:
                problems.append(f"the CUDA emulator does not build (see {log.relative_to(ROOT)})")
                continue
        targets = []
        for m in group:
            targets += [t for t in targets_for(m, quick) if t not in targets]
        rc, seconds, log = tree.run_tests("baseline-cuda" if emulated else "baseline", targets, emulated=emulated,
                                          timeout=timeout)
        print(f"baseline: {'emulated CUDA' if emulated else 'CPU'} tests rc={rc} in {seconds:.0f} s", flush=True)
        if rc != 0:
            problems.append(f"the unmutated {'emulated CUDA ' if emulated else ''}tests fail: "
                            f"{first_failure(log) or rc} (see {log.relative_to(ROOT)})")
    return problems


def run_mutant(tree, mutant, quick, timeout):
    path = tree.path / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        return dict(status="error", by=f"{mutant.old!r} does not occur exactly once", seconds=0.0)
    start = time.monotonic()
    path.write_text(original.replace(mutant.old, mutant.new))
    try:
        if mutant.kind == "cpu" or tree.cpu_stale:
            ok, _, log = tree.build_cpu(mutant.name)
            if not ok:
                return dict(status="error", by=f"does not build (see {log.relative_to(ROOT)})",
                            seconds=time.monotonic() - start)
        if mutant.kind == "cuda":
            ok, _, log = tree.build_emulator(mutant.name)
            if not ok:
                return dict(status="error", by=f"the emulator does not build (see {log.relative_to(ROOT)})",
                            seconds=time.monotonic() - start)
        rc, _, log = tree.run_tests(mutant.name, targets_for(mutant, quick), emulated=mutant.kind == "cuda",
                                    timeout=timeout)
        status, by = outcome(rc, log)
        return dict(status=status, by=by, seconds=time.monotonic() - start)
    finally:
        path.write_text(original)
        if mutant.kind == "cpu":
            tree.cpu_stale = True
        if mutant.kind == "cuda":
            tree.emulator = None


def checkout_state():
    """The commit the copy is synced from, and whether tracked files differ from it."""
    return git("rev-parse", "HEAD").strip(), bool(git("status", "--porcelain", "--untracked-files=no").strip())


def report_text(results, *, mode, capability, seconds, problems, state):
    import torch

    commit, dirty = state
    killed = sum(r["status"] == "killed" for _, r in results)
    survived = sum(r["status"] == "survived" for _, r in results)
    errors = len(results) - killed - survived
    lines = [
        "# Mutation report",
        "",
        "Written by `python tools/mutants.py` (`make mutants`; the catalogue is tools/mutant_catalogue.py).",
        "Each mutant is one small planted bug; **killed** means a test failed with it (the first failing",
        "test is named), **survived** means the whole suite passed: a missing test.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; mode: {mode}",
        f"- commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
        f"- CPU: {cpu_model()}; kernels built for {capability} (torch {torch.__version__}); "
        "CUDA mutants on the CUDA emulator (no GPU)",
        f"- {len(results)} mutants: {killed} killed, {survived} survived, {errors} errors; {seconds / 60:.0f} min",
        "",
    ]
    lines += [f"- baseline problem: {p}" for p in problems]
    lines += ["| mutant | file | covers | planted bug | result | first failing test | s |",
              "|---|---|---|---|---|---|---|"]
    for m, r in results:
        by = r["by"].replace("|", "\\|")
        lines.append(f"| {m.name} | {m.path} | {m.covers} | {m.bug} | {r['status']} | {by} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def read_report(path):
    """An earlier report's commit, capability, minutes and results ({name: result}), as
    report_text wrote them."""
    text = path.read_text()
    commit = re.search(r"^- commit: ([0-9a-f]{40})( \(with uncommitted changes\))?$", text, flags=re.M)
    capability = re.search(r"; kernels built for (\w+) ", text)
    cpu = re.search(r"^- CPU: (.+?); kernels built for ", text, flags=re.M)
    minutes = re.search(r" errors; (\d+) min$", text, flags=re.M)
    if not (commit and capability and minutes and cpu):
        raise ValueError(f"{path} is not a report of tools/mutants.py (no commit, CPU, capability or time line)")
    results = {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| mutant |"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 7:
            raise ValueError(f"{path}: a result row without 7 cells: {line!r}")
        name, _, _, _, status, by, seconds = cells
        results[name] = dict(status=status, by=by, seconds=float(seconds))
    return dict(commit=commit.group(1), dirty=bool(commit.group(2)), capability=capability.group(1), cpu=cpu.group(1),
                minutes=int(minutes.group(1)), results=results)


def resumable(earlier, capability):
    """Why the earlier run's results cannot stand for this run's at all, or None: it ran on a
    clean checkout, for the same capability, and this checkout has nothing uncommitted but the
    report itself. (still_killed then says which of its kills stand.)"""
    if earlier["dirty"]:
        return "it ran with uncommitted changes"
    if earlier["capability"] != capability:
        return f"it ran for {earlier['capability']}, this run is for {capability}"
    pending = [line for line in git("status", "--porcelain").splitlines() if not line.endswith(REPORT.name)]
    if pending:
        return f"this checkout has uncommitted changes ({pending[0].strip()} ...)"
    return None


# What no mutant run reads (the catalogue is compared mutant by mutant instead), and what only
# the emulated CUDA runs read. A CPU or Python mutant's run reads csrc/cuda/ only through the GPU
# checklist's dry run (tests/test_gpu_session.py), which builds the emulator.
NOT_READ = ("*.md", "tools/mutants.py", "tools/mutant_catalogue.py", *sorted(NOT_IN_RUNS))
READ_BY_CUDA_RUNS_ONLY = ("csrc/cuda/*", "tests/test_cuda_*")


def changed_since(commit, unread):
    return subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", commit, "HEAD", "--", ".",
                           *[f":(exclude){p}" for p in unread]]).returncode != 0


def catalogue_at(commit):
    """{name: (path, old, new)} of the catalogue as it was at commit."""
    import importlib.util
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "catalogue_then.py"
        path.write_text(git("show", f"{commit}:tools/mutant_catalogue.py"))
        spec = importlib.util.spec_from_file_location("catalogue_then", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[spec.name]
    return {m.name: (m.path, m.old, m.new) for m in module.MUTANTS}


def still_killed(earlier, mutants):
    """The earlier run's kills that stand for this checkout: the mutant is defined as it was then,
    and nothing its run reads has changed since (for a CPU or Python mutant not killed by the
    GPU checklist's dry run, csrc/cuda/ and the CUDA tests may have)."""
    commit = earlier["commit"]
    then = catalogue_at(commit)
    anything = changed_since(commit, NOT_READ)
    outside_cuda = changed_since(commit, NOT_READ + READ_BY_CUDA_RUNS_ONLY)
    kept = {}
    for m in mutants:
        r = earlier["results"].get(m.name)
        if not r or r["status"] != "killed" or then.get(m.name) != (m.path, m.old, m.new):
            continue
        reads_cuda = m.kind == "cuda" or r["by"].startswith("tests/test_gpu_session.py")
        if not (anything if reads_cuda else outside_cuda):
            kept[m.name] = r
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the fast subset, each against its own tests only")
    parser.add_argument("--only", help="comma-separated mutant names")
    parser.add_argument("--list", action="store_true", help="print the catalogue and exit")
    parser.add_argument("--check", action="store_true", help="check that every mutant applies to this checkout")
    parser.add_argument("--report", type=pathlib.Path, help="where to write the report")
    parser.add_argument("--work", type=pathlib.Path, default=WORK, help="where the copy and its builds live")
    parser.add_argument("--capability", help="DEFAULT, AVX2 or AVX512 (default: the best this CPU has)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per test run (a hang counts as killed)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run (when it just passed)")
    parser.add_argument("--resume", action="store_true",
                        help="the whole catalogue, keeping the kills of tests/mutants-report.md (a run stopped "
                             "part-way) where neither the mutant nor what its run reads has changed since; "
                             "the rest run again")
    args = parser.parse_args(argv)

    problems = check_catalogue()
    if args.check or problems:
        print("\n".join(problems) or f"{len(MUTANTS)} mutants, each applies once")
        return 1 if problems else 0
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:32} {m.kind:6} {'quick' if m.quick else '':5} {m.path:34} {m.bug}")
        return 0

    mutants = list(MUTANTS)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {m.name for m in MUTANTS}
        if unknown:
            parser.error(f"unknown mutants: {sorted(unknown)}")
        mutants = [m for m in mutants if m.name in wanted]
    if args.quick:
        mutants = [m for m in mutants if m.quick]
    mutants = run_order(mutants)
    whole = not args.only and not args.quick
    if args.resume and not whole:
        parser.error("--resume continues the whole catalogue: not with --only or --quick")
    report = args.report or (REPORT if whole else args.work / ("quick-report.md" if args.quick else "report.md"))

    args.work.mkdir(parents=True, exist_ok=True)
    lock = open(args.work / "lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"mutants: another run is using {args.work}; wait for it or pass --work", file=sys.stderr)
        return 2
    # A SIGTERM unwinds like Ctrl-C: the mutated file is restored and the child's group ended.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tree = Tree(args.work, args.capability or cpu_capabilities.best())
    state = checkout_state()
    mode = "quick subset" if args.quick else ("whole catalogue" if whole else f"only {args.only}")
    planned, results, start = mutants, [], time.monotonic()
    if args.resume:
        earlier = read_report(REPORT)
        why_not = resumable(earlier, tree.capability)
        if why_not:
            print(f"mutants: cannot resume from {REPORT}: {why_not}; run the whole catalogue", file=sys.stderr)
            return 2
        kept = still_killed(earlier, planned)
        results = [(m, kept[m.name]) for m in planned if m.name in kept]
        mutants = [m for m in planned if m.name not in kept]
        start -= 60 * earlier["minutes"]
        mode += (f" (resumed: {len(results)} killed kept from the run at {earlier['commit'][:12]}"
                 f" on {earlier['cpu']})")
        print(f"resuming: {len(results)} killed kept, {len(mutants)} to run", flush=True)
    tree.sync()
    failures = [] if args.no_baseline else baseline(tree, mutants, args.quick, args.timeout)

    def write_report(done):
        # Rewritten after every mutant, so a run stopped part-way leaves what it found, said so.
        progress = mode if done else f"{mode}, stopped part-way: {len(results)} of {len(planned)} run"
        write_atomically(report, report_text(results, mode=progress, capability=tree.capability,
                                             seconds=time.monotonic() - start, problems=failures, state=state))

    if failures:
        print("\n".join(failures), file=sys.stderr)
    else:
        for m in mutants:
            r = run_mutant(tree, m, args.quick, args.timeout)
            results.append((m, r))
            print(f"[{len(results)}/{len(planned)}] {m.name}: {r['status']} {r['by']} ({r['seconds']:.0f} s)",
                  flush=True)
            if len(results) < len(planned):
                write_report(done=False)
        results.sort(key=lambda mr: planned.index(mr[0]))
    write_report(done=True)
    print(f"report: {report}")
    return 0 if not failures and all(r["status"] == "killed" for _, r in results) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("mutants: interrupted (the copy's mutated file is restored)", file=sys.stderr)
        sys.exit(130)
