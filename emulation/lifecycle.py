"""Run records: what a run created, so that stop and cleanup remove exactly that.

A run appends one JSON line per resource to `/run/edwc-testbed/<run id>.jsonl` *before*
creating it (names carry the run id and are checked to be free first), and one line per
process right after starting it, with the process's kernel start time so that a reused pid
is never killed. `cleanup()` reads the records of runs whose owner is gone (a crash or a
SIGKILL), removes what they list and nothing else, and deletes the record; a second
cleanup finds nothing to do.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RECORD_DIR = Path(os.environ.get("EDWC_RECORD_DIR", "/run/edwc-testbed"))


def proc_start_time(pid: int) -> int | None:
    """Kernel start time (clock ticks since boot) of `pid`, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[19])  # field 22 overall


def same_process(pid: int, start: int | None) -> bool:
    return start is not None and proc_start_time(pid) == start


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop_recorded(pid: int, start: int | None, timeout: float = 3.0) -> bool:
    """SIGTERM, wait, SIGKILL the process `pid` of a run record if it is still the one
    recorded (its kernel start time matches). Processes we hold a handle to are stopped by
    common.procs instead."""
    if not same_process(pid, start):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _is_zombie_or_gone(pid) or not same_process(pid, start):
                return True
            time.sleep(0.01)
    return True


def _quiet(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def del_bridges_command(bridges: list[str], timeout: int = 20) -> list[str]:
    """One ovs-vsctl transaction deleting every bridge named (missing ones are skipped)."""
    cmd = ["ovs-vsctl", f"--timeout={timeout}"]
    for b in bridges:
        cmd += ["--", "--if-exists", "del-br", b]
    return cmd


def intf_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def bridge_exists(name: str) -> bool:
    return _quiet(["ovs-vsctl", "--timeout=5", "br-exists", name]).returncode == 0


@dataclass
class RunRecord:
    run_id: str
    path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = RECORD_DIR / f"{self.run_id}.jsonl"

    def open(self, **info) -> None:
        RECORD_DIR.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            raise FileExistsError(f"run record {self.path} already exists")
        me = os.getpid()
        self._append({"t": "run", "run_id": self.run_id, "owner_pid": me,
                      "owner_start": proc_start_time(me), "created": time.time(), **info})

    def _append(self, entry: dict) -> None:
        line = json.dumps(entry) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def bridge(self, name: str) -> None:
        self._append({"t": "bridge", "name": name})

    def intf(self, name: str) -> None:
        self._append({"t": "intf", "name": name})

    def netns(self, name: str) -> None:
        self._append({"t": "netns", "name": name})

    def ovs_qos(self, tag: str) -> None:
        """OVSDB QoS rows tagged external_ids:edwc-run=<tag>."""
        self._append({"t": "ovs_qos", "tag": tag})

    def directory(self, path: str | os.PathLike) -> None:
        self._append({"t": "dir", "path": str(path)})

    def process(self, pid: int, what: str) -> None:
        self._append({"t": "proc", "pid": pid, "start": proc_start_time(pid), "what": what})

    def entries(self) -> list[dict]:
        return read_record(self.path)

    def release(self, keep_dirs: bool = False) -> dict:
        """Remove everything recorded (newest processes first), then the record itself;
        with keep_dirs, the work directories stay (logs for a person to read)."""
        entries = [e for e in self.entries() if not (keep_dirs and e.get("t") == "dir")]
        summary = release_entries(entries)
        self.path.unlink(missing_ok=True)
        return summary


def read_record(path: Path) -> list[dict]:
    entries = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line from a crash
    return entries


def release_entries(entries: list[dict]) -> dict:
    removed: dict[str, list] = {"processes": [], "bridges": [], "ovsdb_rows": [],
                                "interfaces": [], "namespaces": [], "dirs": []}
    for e in reversed([e for e in entries if e.get("t") == "proc"]):
        if stop_recorded(int(e["pid"]), e.get("start")):
            removed["processes"].append(f"{e.get('what', '?')}:{e['pid']}")
    bridges = [e["name"] for e in entries if e.get("t") == "bridge"]
    existing = [b for b in bridges if bridge_exists(b)]
    if existing:
        _quiet(del_bridges_command(existing))
        removed["bridges"] += existing
    for e in entries:
        if e.get("t") == "ovs_qos":  # after the bridges: ports no longer refer to it
            found = _quiet(["ovs-vsctl", "--timeout=10", "--bare", "--columns=_uuid", "find",
                            "qos", f"external_ids:edwc-run={e['tag']}"]).stdout.split()
            for uuid in found:
                _quiet(["ovs-vsctl", "--timeout=10", "--if-exists", "destroy", "qos", uuid])
            removed["ovsdb_rows"] += [f"qos:{u}" for u in found]
    for e in entries:
        if e.get("t") == "intf" and intf_exists(e["name"]):
            _quiet(["ip", "link", "del", e["name"]])
            removed["interfaces"].append(e["name"])
        elif e.get("t") == "netns" and os.path.exists(f"/run/netns/{e['name']}"):
            _quiet(["ip", "netns", "del", e["name"]])
            removed["namespaces"].append(e["name"])
    for e in entries:
        if e.get("t") == "dir" and os.path.isdir(e["path"]):
            shutil.rmtree(e["path"], ignore_errors=True)
            removed["dirs"].append(e["path"])
    return removed


def owner_alive(entries: list[dict]) -> bool:
    head = next((e for e in entries if e.get("t") == "run"), None)
    if head is None:
        return False
    return same_process(int(head["owner_pid"]), head.get("owner_start"))


def cleanup(run_id: str | None = None, *, force: bool = False) -> list[dict]:
    """Remove what dead runs left behind. Returns one summary per run cleaned."""
    results = []
    if not RECORD_DIR.is_dir():
        return results
    for path in sorted(RECORD_DIR.glob("*.jsonl")):
        rid = path.stem
        if run_id is not None and rid != run_id:
            continue
        entries = read_record(path)
        if owner_alive(entries) and not force:
            results.append({"run_id": rid, "skipped": "its owner process is still running; "
                            "stop it, or pass --force"})
            continue
        summary = release_entries(entries)
        path.unlink(missing_ok=True)
        results.append({"run_id": rid, **summary})
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m emulation cleanup",
        description="Remove what crashed testbed runs left behind (their bridges, interfaces, "
                    "namespaces, processes and work directories, as recorded under "
                    f"{RECORD_DIR}), and nothing else.")
    ap.add_argument("--run", help="only this run id")
    ap.add_argument("--force", action="store_true",
                    help="also clean runs whose owner process is still alive")
    ap.add_argument("--list", action="store_true", help="list the records, remove nothing")
    args = ap.parse_args(argv)
    if args.list:
        for path in sorted(RECORD_DIR.glob("*.jsonl")) if RECORD_DIR.is_dir() else []:
            entries = read_record(path)
            kinds: dict[str, int] = {}
            for e in entries:
                kinds[e.get("t", "?")] = kinds.get(e.get("t", "?"), 0) + 1
            state = "running" if owner_alive(entries) else "dead"
            print(f"{path.stem}: {state}, {kinds}")
        return 0
    results = cleanup(args.run, force=args.force)
    if not results:
        print("nothing to clean up")
    for r in results:
        if "skipped" in r:
            print(f"run {r['run_id']}: skipped, {r['skipped']}")
            continue
        parts = [f"{len(v)} {k}" for k, v in r.items() if k != "run_id"]
        print(f"run {r['run_id']}: removed " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
