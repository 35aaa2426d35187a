#!/usr/bin/env bash
# One idempotent setup step for the EDWC testbed on Debian 12 / Ubuntu 22.04 / 24.04:
#   1. the apt packages (Mininet, Open vSwitch, iperf3, ethtool, ping, ...),
#   2. a Python virtual environment in .venv, built on the system python3 so that
#      Debian's Mininet module is visible, with the pinned Python dependencies,
#   3. Open vSwitch running (systemd where there is one, ovs-ctl otherwise).
# Running it again changes nothing that is already in place.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="$HERE/.venv"
SYS_PY=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo "$0" "$@"
    fi
    echo "setup.sh: needs root to install packages and start Open vSwitch; run it as root" >&2
    exit 1
fi

say() { printf '[setup] %s\n' "$*"; }

# --- 1. apt packages ----------------------------------------------------------
APT_PKGS=(mininet openvswitch-switch iperf3 ethtool iputils-ping iproute2 procps
          python3 python3-venv python3-pip python-is-python3 sudo)
missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "apt packages present"
fi

# The kernel path needs sch_netem; Ubuntu ships it in linux-modules-extra, which cloud and
# minimal images may lack. Best effort: without it the testbed uses the userspace delay line.
if ! modinfo sch_netem >/dev/null 2>&1 && grep -q '^ID=ubuntu' /etc/os-release 2>/dev/null; then
    extra="linux-modules-extra-$(uname -r)"
    if apt-cache policy "$extra" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        say "installing $extra (sch_netem for kernel link emulation)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$extra" >/dev/null \
            || say "could not install $extra; the userspace delay line will be used"
    fi
fi

# --- 2. Python environment ----------------------------------------------------
has_mininet='import importlib.util, sys; sys.exit(importlib.util.find_spec("mininet") is None)'
if ! "$SYS_PY" -c "$has_mininet"; then
    echo "setup.sh: $SYS_PY cannot find the mininet module after installing the 'mininet' package; check 'dpkg -L mininet'" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "$has_mininet" 2>/dev/null; then
    say "creating $VENV (on $SYS_PY, with system site-packages for Mininet)"
    rm -rf "$VENV"
    "$SYS_PY" -m venv --system-site-packages "$VENV"
fi
req_hash=$(cat "$HERE/requirements.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
    say "installing pinned Python dependencies (requirements.txt)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
    echo "$req_hash" > "$VENV/.requirements.sha256"
else
    say "Python dependencies up to date"
fi
# The project itself, installed editable: the venv imports this checkout and gets the `edwc`
# command (pyproject.toml). Reinstalled only when pyproject.toml changes.
proj_hash=$(sha256sum "$HERE/pyproject.toml" | cut -d' ' -f1)
if [ "$(cat "$VENV/.project.sha256" 2>/dev/null)" != "$proj_hash" ] \
        || ! "$VENV/bin/python" -c 'import common.bootstrap' 2>/dev/null \
        || [ "$("$VENV/bin/python" -c 'import common, os; print(os.path.dirname(os.path.dirname(common.__file__)))' 2>/dev/null)" != "$HERE" ]; then
    say "installing the project into $VENV (editable)"
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -f "$site/edwc_testbed.pth"  # the path file of older checkouts
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$HERE"
    echo "$proj_hash" > "$VENV/.project.sha256"
else
    say "project installed"
fi
"$VENV/bin/python" -c 'import emulation.mncompat, mininet.net, os_ken, networkx, yaml, matplotlib' \
    || { echo "setup.sh: the environment in $VENV is incomplete; delete it and run setup.sh again" >&2; exit 1; }
[ -x "$VENV/bin/edwc" ] || { echo "setup.sh: $VENV/bin/edwc is missing after installing the project" >&2; exit 1; }

# --- 3. Open vSwitch ----------------------------------------------------------
if ovs-vsctl --timeout=5 show >/dev/null 2>&1; then
    say "Open vSwitch is running"
else
    say "starting Open vSwitch"
    if [ -d /run/systemd/system ] && systemctl start openvswitch-switch 2>/dev/null; then
        :
    else
        /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null
    fi
    ovs-vsctl --timeout=10 show >/dev/null \
        || { echo "setup.sh: Open vSwitch did not start; see /var/log/openvswitch/" >&2; exit 1; }
fi

say "ready: $("$VENV/bin/python" -m emulation check --brief 2>/dev/null || echo 'environment installed')"
