"""The emulation runtime: the plan of a topology brought up in Mininet and Open vSwitch,
with the controller process, gateway agents and link emulation (netem, or the userspace
delay line), and taken down exactly.

``from emulation import Emulation`` (also ``LinkConfig``, ``AgentOptions``, ``BuildError``)
is resolved lazily, so that small programs of this package (the delay line) do not import
the orchestration.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"Emulation", "LinkConfig", "AgentOptions", "BuildError", "ControllerConfig"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from emulation import network
        return getattr(network, name)
    raise AttributeError(f"module 'emulation' has no attribute {name!r}")
