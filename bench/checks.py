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

from common import machine, write_results
from tracefix.fixing.engine import refine
from tracefix.fixing.prompt import Baseline, FixRequest
from tracefix.settings import LLMSettings
from tracefix.tracing import Call, Trace

BROKEN = '''def apply_discount(price, percent):
    """Price after taking `percent` percent off."""
    return price * (1 - percent / 10)
'''
GREEN = BROKEN.replace("percent / 10)", "percent / 100)")
TESTS = """from pricing import apply_discount


def test_discount():
    assert apply_discount(200, 25) == 150


def test_no_discount():
    assert apply_discount(80, 0) == 80
"""
NODEID = "tests/test_pricing.py::test_discount"
LABEL = "pricing.py::apply_discount"


def project(directory: Path) -> Path:
    (directory / "tests").mkdir(parents=True)
    (directory / "pricing.py").write_text(BROKEN)
    (directory / "tests" / "test_pricing.py").write_text(TESTS)
    (directory / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    return directory


async def once(root: Path, differential: bool) -> dict:
    request = FixRequest(
        root=root,
        python=sys.executable,
        path="pricing.py",
        qualname="apply_discount",
        function_source=BROKEN,
        function_start_line=1,
        function_end_line=3,
        signature="def apply_discount(price, percent):",
        test_nodeid=NODEID,
        test_source=TESTS,
        failure_message="assert -300.0 == 150",
        affected_tests=["tests/test_pricing.py::test_no_discount"],
        trace=Trace(
            NODEID,
            "failed",
            calls=[Call("pricing.py", "apply_discount", 1, 3, 1, args={"price": "200", "percent": "25"})],
        ),
        inputs={LABEL: [{"price": "80", "percent": "0"}]},
        baselines={LABEL: Baseline(GREEN, time.time())} if differential else {},
    )
    with FakeOpenAI([f"```python\n{GREEN}```\n"]) as fake:
        settings = LLMSettings(model="fake-model", base_url=fake.base_url, candidates=1, rounds=1)
        outcome = await refine(request, settings)
    assert outcome.best is not None, outcome.evidence or outcome.error
    return {"wall_s": outcome.wall_time, "checks_s": round(outcome.check_time, 3), "evidence": outcome.evidence}


async def main(repeat: int) -> dict:
    found: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp) / "proj")
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
