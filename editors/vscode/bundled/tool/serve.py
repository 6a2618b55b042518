"""Starts the tracefix language server that package.py bundled into the extension, with this
interpreter and nothing installed in it: bundled/libs/common and bundled/libs/cpXY (the compiled
packages for this CPython version) go first on sys.path. Arguments go to `tracefix serve`.
Until sys.path is set it is plain old Python, so any interpreter can say that it is the wrong one."""

import os
import sys

libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "libs")
compiled = os.path.join(libs, "cp%d%d" % sys.version_info[:2])  # noqa: UP031
if not os.path.isdir(compiled):
    bundled = sorted(name[2:3] + "." + name[3:] for name in os.listdir(libs) if name.startswith("cp"))
    sys.exit(
        "tracefix: this extension carries its server for Python %s, and %s is Python %d.%d"  # noqa: UP031
        % (", ".join(bundled), sys.executable, sys.version_info[0], sys.version_info[1])
    )
sys.path[:0] = [compiled, os.path.join(libs, "common")]

from tracefix.cli import main  # noqa: E402

sys.exit(main(["serve"] + sys.argv[1:]))
