"""pytest plugin for the benchmarks: writes {nodeid: outcome} of the session to $BENCH_OUTCOMES.

A test is "failed" if any of its phases (or a subtest) failed; a collection error counts as a
failed test named by the collector, so an import-breaking mutant is still seen."""

import json
import os

_outcomes = {}


def pytest_runtest_logreport(report):
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.when == "call" or (report.skipped and report.nodeid not in _outcomes):
        _outcomes.setdefault(report.nodeid, report.outcome)


def pytest_collectreport(report):
    if report.failed:
        _outcomes[report.nodeid] = "failed"


def pytest_sessionfinish(session):
    path = os.environ.get("BENCH_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(_outcomes, f)
