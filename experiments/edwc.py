"""`edwc`: one command for every program of the testbed (installed by ``./setup.sh``).

    edwc run [OPTIONS]             compute-aware routing on the backbone (run_backbone.py)
    edwc fiber-cut | capacity-shift | policy-compare [OPTIONS]   the scenarios
    edwc compare A B               two or more report directories side by side
    edwc topology show|validate    the backbone as data
    edwc probes envelope|paths     measurements on an emulated topology
    edwc emulation check|cleanup   the link-emulation path; what crashed runs left behind
    edwc controller | gateway      the controller and gateway-agent processes (the emulation
                                   starts these itself)

Each subcommand is the program of the named module; ``edwc SUBCOMMAND --help`` lists its
options. Needs root where the program builds an emulation (``sudo .venv/bin/edwc run``).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "experiments.studies.backbone",
    "fiber-cut": "experiments.studies.fiber_cut",
    "capacity-shift": "experiments.studies.capacity_shift",
    "policy-compare": "experiments.studies.policy_compare",
    "compare": "experiments.report.compare",
    "topology": "topology.cli",
    "probes": "probes.cli",
    "emulation": "emulation.cli",
    "controller": "controller.__main__",
    "gateway": "gateway.__main__",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    module = COMMANDS.get(name)
    if module is None:
        print(f"edwc: unknown command {name!r}; one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    sys.argv[0] = f"edwc {name}"
    return importlib.import_module(module).main(rest)


if __name__ == "__main__":
    sys.exit(main())
