"""What the checks beyond the tests cost: one fix job with a scripted right reply, verified with and
without a version under which the tests passed (differential, property), timed in FixOutcome.

    python bench/checks.py --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fake_openai import FakeOpenAI
from tests.support.projects import PRICING_GREEN, PRICING_LABEL, pricing, pricing_request

from common import machine, write_results
from tracefix.fixing.engine import refine
from tracefix.fixing.prompt import Baseline
from tracefix.settings import LLMSettings


async def once(root: Path, differential: bool) -> dict:
    baselines = {PRICING_LABEL: Baseline(PRICING_GREEN, time.time())} if differential else {}
    request = pricing_request(root, baselines=baselines)
    with FakeOpenAI([f"```python\n{PRICING_GREEN}```\n"]) as fake:
        settings = LLMSettings(model="fake-model", base_url=fake.base_url, candidates=1, rounds=1)
        outcome = await refine(request, settings)
    assert outcome.best is not None, outcome.evidence or outcome.error
    return {"wall_s": outcome.wall_time, "checks_s": round(outcome.check_time, 3), "evidence": outcome.evidence}


async def main(repeat: int) -> dict:
    found: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = pricing(Path(tmp) / "proj")
        for kind, differential in (("differential", True), ("property", False)):
            runs = [await once(root, differential) for _ in range(repeat)]
            checks, walls = [r["checks_s"] for r in runs], [r["wall_s"] for r in runs]
            found[kind] = {
                "checks_s_median": statistics.median(checks),
                "checks_s_max": max(checks),
                "wall_s_median": statistics.median(walls),
                "share_of_wall": round(statistics.median(checks) / statistics.median(walls), 2),
                "evidence": runs[-1]["evidence"],
            }
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = {"command": f"python bench/checks.py --repeat {args.repeat}", "machine": machine()}
    result |= asyncio.run(main(args.repeat))
    print(json.dumps(result, indent=2))
    print(f"wrote {write_results('checks', result)}")
