"""Root-only integration tests: real Mininet, Open vSwitch, controller process, delay line."""

import os
import shutil
import subprocess

import pytest


def _ovs_running() -> bool:
    if shutil.which("ovs-vsctl") is None:
        return False
    return subprocess.run(["ovs-vsctl", "--timeout=3", "show"],
                          capture_output=True).returncode == 0


def pytest_collection_modifyitems(config, items):
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (run the suite with sudo)"
    elif not _ovs_running():
        reason = "Open vSwitch is not running (run ./setup.sh)"
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.root)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def leftovers(run_id: str) -> dict:
    """Everything on the machine that carries this run's id."""
    tag = f"ew{run_id}"
    intfs = [n for n in os.listdir("/sys/class/net") if n.startswith(tag)]
    brs = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    qos = subprocess.run(["ovs-vsctl", "--bare", "--columns=_uuid", "find", "qos",
                          f"external_ids:edwc-run={run_id}"], capture_output=True,
                         text=True).stdout.split()
    return {"interfaces": intfs, "bridges": [b for b in brs if b.startswith(tag)],
            "ovs_qos_rows": qos,
            "netns": [ln.split()[0] for ln in netns.splitlines() if ln.startswith(tag)],
            "record": os.path.exists(f"/run/edwc-testbed/{run_id}.jsonl")}


def assert_clean(run_id: str) -> None:
    import time
    deadline = time.monotonic() + 5  # namespace teardown in the kernel is asynchronous
    while True:
        left = leftovers(run_id)
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not any(left.values()), f"run {run_id} left {left}"
