"""Does CPU-bound Python code run in parallel on a free-threaded CPython?

Two threads each run one share of a pure-Python loop; one thread runs both
shares. The ratio (one thread's time / two threads' time) is the speed-up:
2.0 is perfect on two cores, 1.0 is no parallelism at all.

The *same source* is loaded into the interpreter in different ways, because on
free-threaded 3.13 that decides whether it scales (docs/free-threading.md):

  exec         exec(source) into a namespace: the way a script run as __main__ is compiled
  compile      exec(compile(source)): the builtin compile(), as importlib uses it
  import       `import` of a module with no .pyc (compiled by importlib from source)
  import-pyc   `import` of a module whose .pyc already exists (loaded by marshal)
  import+fix   `import` with no .pyc, then every function's code object rebuilt
               with code.replace(), which interns its constants

Two numbers per variant: the wall-clock speed-up, and the CPU cost: CPU seconds
the two threads burned for the same work, over the one thread's (1.00x = running
in parallel cost nothing extra; contention on a shared cache line shows up as
more CPU time). "cores busy" is the two threads' CPU time over their wall time:
2.00 when both ran the whole time, lower when other processes had the cores. The CPU cost holds even on a machine whose cores other processes
are using, where the wall-clock speed-up cannot reach 2.0.

Each variant runs in a fresh interpreter (the one given by --python, default this
one), rounds alternate serial and parallel runs, and the median ratio is printed.

    python bench/ft_scaling.py --python ~/.cache/echoserver/python/3.13.15t/bin/python3.13t

On a machine whose cores other work keeps busy ("cores busy" well under 2), run it under
`chrt -f 10` so that the two threads really run at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

# The loop under test. 1000003 is a constant that is neither a small int nor a
# string: on 3.13t every LOAD_CONST of it touches its reference count.
WORK_SOURCE = """
def spin(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x

def share(calls, n):
    for _ in range(calls):
        spin(n)
"""
VARIANTS = ("exec", "compile", "import", "import-pyc", "import+fix")
MODULE = "ft_scaling_work"


def load(variant: str, tmp: str):
    """Return (share, spin) loaded the way *variant* says."""
    if variant in ("exec", "compile"):
        namespace: dict = {"__name__": "__main__"}
        code = WORK_SOURCE if variant == "exec" else compile(WORK_SOURCE, "<work>", "exec")
        exec(code, namespace)
        return namespace["share"], namespace["spin"]
    path = os.path.join(tmp, MODULE + ".py")
    with open(path, "w") as f:
        f.write(WORK_SOURCE)
    if variant == "import-pyc":
        import py_compile

        py_compile.compile(path, doraise=True)
    else:
        sys.dont_write_bytecode = True
    sys.path.insert(0, tmp)
    import importlib

    module = importlib.import_module(MODULE)
    if variant == "import+fix":
        intern_code_constants(module)
    return module.share, module.spin


def intern_code_constants(module) -> None:
    """Rebuild the code of every function in *module* with code.replace().

    code.replace() builds the code object anew (_PyCode_New), and that interns
    and immortalizes its constants, which compile() had left mortal.
    """
    for value in vars(module).values():
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            value.__code__ = rebuilt(value.__code__)


def rebuilt(code: types.CodeType) -> types.CodeType:
    consts = tuple(rebuilt(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_consts=consts)


def timed(threads: int, share, calls: int, n: int) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds summed over the threads."""
    per_thread = calls // threads
    cpu = [0.0] * threads

    def run(slot: int) -> None:
        start = time.thread_time()
        share(per_thread, n)
        cpu[slot] = time.thread_time() - start

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start, sum(cpu)


def child(variant: str, calls: int, n: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        share, spin = load(variant, tmp)
        timed(2, share, 20, n)  # warm-up; also starts the first non-main thread
        speedups, cpu_costs, cores = [], [], []
        for _ in range(rounds):
            one_wall, one_cpu = timed(1, share, 2 * calls, n)
            two_wall, two_cpu = timed(2, share, 2 * calls, n)
            speedups.append(one_wall / two_wall)
            cpu_costs.append(two_cpu / one_cpu)
            cores.append(two_cpu / two_wall)
    constant = next(c for c in spin.__code__.co_consts if c == 1000003)
    return {
        "speedups": speedups,
        "cpu_costs": cpu_costs,
        "cores": cores,
        "gil": getattr(sys, "_is_gil_enabled", lambda: True)(),
        # An immortal object reports an enormous reference count.
        "constant_immortal": sys.getrefcount(constant) > 2**30,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable; default: all")
    parser.add_argument("--calls", type=int, default=1500, help="calls per thread share")
    parser.add_argument("--n", type=int, default=5000, help="loop iterations per call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "-X", dest="xopts", action="append", default=[], help="-X option for the measured interpreter, e.g. gil=1"
    )
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.calls, args.n, args.rounds)))
        return 0
    if args.calls < 2 or args.n < 1 or args.rounds < 1:
        parser.error("--calls must be >= 2, --n and --rounds >= 1")

    xflags = [f for x in args.xopts for f in ("-X", x)]
    try:
        version = subprocess.run(
            [
                args.python,
                *xflags,
                "-c",
                "import sys, sysconfig; print(sys."
                "version.split()[0], 'free-threaded' if sysconfig.get_config_var("
                "'Py_GIL_DISABLED') else 'with GIL')",
            ],
            capture_output=True,
            text=True,
        )
    except OSError as e:
        parser.error(f"cannot run {args.python}: {e.strerror}")
    if version.returncode != 0:
        parser.error(f"cannot run {args.python}: {version.stderr.strip() or version.returncode}")
    print(
        f"# {args.python} {' '.join(xflags)}: CPython {version.stdout.strip()},"
        f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"# 2 threads x {args.calls} calls of a {args.n}-iteration loop vs 1 thread doing both;"
        f" median of {args.rounds} alternating rounds"
    )
    print(
        f"{'variant':<12} {'speed-up':>8} {'range':>12}   {'CPU cost':>8} {'range':>12}"
        f"  {'cores busy':>10}  constant immortal  GIL"
    )
    for variant in args.variant or VARIANTS:
        cmd = [
            args.python,
            *xflags,
            os.path.abspath(__file__),
            "--child",
            variant,
            "--calls",
            str(args.calls),
            "--n",
            str(args.n),
            "--rounds",
            str(args.rounds),
        ]
        run = subprocess.run(
            cmd, capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
        )
        if run.returncode != 0:
            print(f"{variant:<12} failed: {run.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(run.stdout)
        s, c = r["speedups"], r["cpu_costs"]
        print(
            f"{variant:<12} {statistics.median(s):>7.2f}x {min(s):>5.2f}-{max(s):.2f}x"
            f"   {statistics.median(c):>7.2f}x {min(c):>5.2f}-{max(c):.2f}x"
            f"  {statistics.median(r['cores']):>10.2f}"
            f"  {str(r['constant_immortal']):<17}  {'on' if r['gil'] else 'off'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
