"""Tracing: block-level execution traces of one test (values per basic block, condensed loops),
rendered for people and for fix prompts, and queried for inline values.

Pure core: nothing here knows about LSP; lines are 1-based, paths relative to the workspace root.
The recording itself happens in the user's interpreter, in running/plugin/tracefix_trace.py.
"""

from tracefix.tracing.capture import capture, capture_passing
from tracefix.tracing.trace import Block, Call, Trace, lines_in

__all__ = ["Block", "Call", "Trace", "capture", "capture_passing", "lines_in"]
