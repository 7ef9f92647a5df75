"""Wall time of ``benchsuite --help``, ``plugins``, ``methods`` and ``tasks``: loading every plugin
(catalog cache off) against printing from the plugin catalog cache, side by side.

Each command runs as a user types it (a new process), ``--repeats`` times per way, the ways
interleaved so that a change of machine load hits them alike:

- ``loaded``: ``BENCHSUITE_PLUGIN_CACHE=0``, every plugin imported (and torch with them);
- ``refresh``: the cache is stale (its file removed first): plugins loaded and the catalog written;
- ``cached``: the cache is current: nothing of the plugins is imported.

It prints the median of each and the ratio loaded / cached (goal: cached ≤ 1.5 s), and checks
that (1) the cached output is byte for byte the loaded output, (2) the cache follows a change of a
plugin's source: a throw-away plugin (a module and its dist-info in a temporary directory on
``PYTHONPATH``) is listed, its summary edited, and the next listing must show the new summary.
Exit status 1 if a check fails. The cache lives in a temporary ``BENCHSUITE_CACHE_DIR``.

    python benchmarks/listing_times.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (["--help"], ["plugins"], ["methods"], ["tasks"])

PLUGIN = '''
from benchsuite import LossMethod, LossOutput, hookimpl


class Throwaway(LossMethod):
    name = "throwaway_ce"
    summary = "{summary}"

    def compute(self, logits, targets):
        import torch.nn.functional as F

        return LossOutput(F.cross_entropy(logits, targets))


@hookimpl
def register_methods(register):
    register(Throwaway)
'''


def run(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    tic = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchsuite", *command], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"benchsuite {' '.join(command)} failed: {done.stderr}")
    return elapsed, done.stdout


def install_plugin(site: Path, summary: str) -> None:
    (site / "throwaway_listing.py").write_text(PLUGIN.format(summary=summary))
    info = site / "throwaway-listing-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-listing\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[benchsuite]\nthrowaway_listing = throwaway_listing\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        env = {**os.environ, "BENCHSUITE_CACHE_DIR": str(cache), "BENCHSUITE_PLUGIN_CACHE": "1"}
        ways = {"loaded": {**env, "BENCHSUITE_PLUGIN_CACHE": "0"}, "refresh": env, "cached": env}
        times: dict[tuple[str, str], list[float]] = {}
        outputs: dict[tuple[str, str], str] = {}
        for _ in range(args.repeats):
            for command in COMMANDS:
                for way, way_env in ways.items():
                    if way == "refresh":
                        (cache / "plugin-catalog.json").unlink(missing_ok=True)
                    elapsed, outputs[command[0], way] = run(command, way_env)
                    times.setdefault((command[0], way), []).append(elapsed)
        print(f"median wall time of {args.repeats} runs, interleaved (load average {os.getloadavg()[0]:.2f} at the end)")
        print(f"{'command':<10} {'loaded':>8} {'refresh':>8} {'cached':>8}  loaded/cached  same output")
        identical = True
        for command in COMMANDS:
            median = {way: statistics.median(times[command[0], way]) for way in ways}
            same = outputs[command[0], "loaded"] == outputs[command[0], "cached"] == outputs[command[0], "refresh"]
            identical &= same
            print(
                f"{command[0]:<10} {median['loaded']:>7.2f}s {median['refresh']:>7.2f}s {median['cached']:>7.2f}s"
                f"  {median['loaded'] / median['cached']:>12.1f}x  {'yes' if same else 'NO'}"
            )
        followed = follows_plugin_edits(Path(tmp), env)
        print(f"cache follows an edited plugin: {'yes' if followed else 'NO'}")
    return 0 if identical and followed else 1


def follows_plugin_edits(tmp: Path, env: dict[str, str]) -> bool:
    """List a throw-away plugin, edit its source, list again: the new summary must show."""
    site = tmp / "site"
    site.mkdir()
    env = {**env, "PYTHONPATH": os.pathsep.join([str(site), env.get("PYTHONPATH", "")])}
    install_plugin(site, "first summary")
    run(["methods"], env)
    first_cached = run(["methods"], env)[1]
    install_plugin(site, "second summary, longer")
    after_edit = run(["methods"], env)[1]
    return "first summary" in first_cached and "second summary, longer" in after_edit and "first summary" not in after_edit


if __name__ == "__main__":
    sys.exit(main())
