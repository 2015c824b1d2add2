"""Run a server module (``gateway`` or ``bench.ceiling``) with bench-only instrumentation.

``python -m bench.launch [--profile-out FILE] [--patch NAME,...] -m MODULE ARGS...`` runs
``MODULE``'s ``__main__`` unchanged, after:

* ``--profile-out``: SIGUSR1 starts (or restarts) cProfile, SIGUSR2 stops it and writes the
  stats to FILE (``pstats`` format). The harness sends them at the edges of the measurement
  window, so start-up, warm-up and shutdown stay out of the profile.
* ``--patch``: experiments that prototype an optimisation *in this process only*, so its
  effect can be measured end to end before anyone changes the gateway (see
  :data:`bench.patches.PATCHES`). The gateway's code is not modified.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import runpy
import signal
import sys
from collections.abc import Sequence

from bench.patches import PATCHES


def install_profiler(out: str) -> None:
    state: dict[str, cProfile.Profile] = {}

    def start(signum: int, frame: object) -> None:
        state["profile"] = profile = cProfile.Profile()
        profile.enable()

    def stop(signum: int, frame: object) -> None:
        profile = state.pop("profile", None)
        if profile is None:
            return
        profile.disable()
        partial = f"{out}.partial"
        profile.dump_stats(partial)
        os.replace(partial, out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench.launch",
        usage="%(prog)s [--profile-out FILE] [--patch NAME,...] -m MODULE [ARGS...]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile-out", help="where SIGUSR2 writes the pstats dump")
    parser.add_argument("--patch", default="", help=f"comma-separated: {', '.join(PATCHES)}")
    # Everything after "-m MODULE" belongs to the module, options included.
    if "-m" not in argv or argv.index("-m") + 1 >= len(argv):
        parser.parse_args(argv)  # --help, or a complaint
        parser.error("-m MODULE is required")
    split = argv.index("-m")
    args = parser.parse_args(argv[:split])
    module, module_args = argv[split + 1], argv[split + 2 :]
    for name in filter(None, (p.strip() for p in args.patch.split(","))):
        if name not in PATCHES:
            parser.error(f"unknown patch {name!r} (have {', '.join(PATCHES)})")
        PATCHES[name].apply()
        print(f"bench.launch: patch {name} applied", file=sys.stderr, flush=True)
    if args.profile_out:
        install_profiler(args.profile_out)
    sys.argv = [module, *module_args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
