"""What one Kedro session per campaign saves: a context loaded through a new ``KedroSession`` (what
every stage load and run of a campaign did before) against one through the campaign's
``KedroServiceSession`` (``runs/session.py::campaign_session``).

    python benchmarks/session_overhead.py --project <a bootstrapped project> [--repeats 10]

Prints the mean milliseconds of each and their ratio, measured in turn in this process.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--env", default=None)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    from eurus_prime.runs.session import campaign_session, open_context

    project = args.project.resolve()
    os.chdir(project)

    def load() -> None:
        with open_context(project, args.env, {"iteration": 0}) as context:
            context.params  # noqa: B018 (the load is the point)

    def mean_ms() -> float:
        load()  # warm: imports, first config read
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            load()
        return 1000 * (time.perf_counter() - t0) / args.repeats

    alone = mean_ms()
    with campaign_session(project, args.env):
        shared = mean_ms()
    print(
        f"context per new KedroSession: {alone:.0f} ms; through the campaign's KedroServiceSession: "
        f"{shared:.0f} ms ({alone / shared:.2f}x), {args.repeats} loads each"
    )


if __name__ == "__main__":
    main()
