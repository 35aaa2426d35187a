"""`python -m emulation`: the machine-facing tools of the emulation runtime.

    python -m emulation check [--brief]      which link-emulation path and OVS datapath this
                                             machine will use (and why)
    sudo python -m emulation cleanup         remove what crashed runs left behind, and nothing
                                             else (--run ID, --list, --force)
"""

from __future__ import annotations

import argparse
import sys

from emulation import lifecycle, linkmode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulation", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", add_help=False, help="the link-emulation path of this machine")
    sub.add_parser("cleanup", add_help=False, help="remove what crashed runs left behind")
    args, rest = ap.parse_known_args(argv)
    if args.cmd == "cleanup":
        return lifecycle.main(rest)
    return linkmode.main(rest)


if __name__ == "__main__":
    sys.exit(main())
