"""Import Mininet on Python 3.12+, where `distutils` no longer exists.

Debian's and Ubuntu's Mininet 2.3.0 does `from distutils.version import StrictVersion`
(only to compare Open vSwitch versions). Where distutils is missing (Ubuntu 24.04's Python
3.12) this installs a minimal stand-in built on `packaging` before Mininet is imported.
Import this module before any `mininet` module.
"""

from __future__ import annotations

import functools
import sys
import types


def ensure_distutils_version() -> None:
    try:
        import distutils.version  # noqa: F401
        return
    except ImportError:
        pass
    from packaging.version import Version

    @functools.total_ordering
    class StrictVersion:
        def __init__(self, text: str):
            self.version = Version(str(text))

        def __eq__(self, other):
            return self.version == StrictVersion(str(other)).version \
                if not isinstance(other, StrictVersion) else self.version == other.version

        def __lt__(self, other):
            other = other if isinstance(other, StrictVersion) else StrictVersion(str(other))
            return self.version < other.version

        def __str__(self):
            return str(self.version)

    pkg = sys.modules.get("distutils") or types.ModuleType("distutils")
    ver = types.ModuleType("distutils.version")
    ver.StrictVersion = StrictVersion
    ver.LooseVersion = StrictVersion
    pkg.version = ver
    sys.modules["distutils"] = pkg
    sys.modules["distutils.version"] = ver


ensure_distutils_version()
