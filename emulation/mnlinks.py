"""Mininet extensions (subclasses, never patches): the delay-line link and a switch whose
ports get an OVS interface type.

DelayLineLink: instead of one veth pair between two switch ports, two pairs whose inner
ends (relay1, relay2) belong to the userspace delay line:

    switch1 port <-veth-> relay1  ~~delay line~~  relay2 <-veth-> switch2 port
                         (relay ends in the run's delay-line network namespace)

Mininet sees an ordinary link between the two switch ports; taking a port down (a fibre
cut) is carrier loss on that switch port, as with a plain veth.
"""

from __future__ import annotations

import subprocess

from mininet.link import Link
from mininet.node import OVSSwitch

import emulation.mncompat  # noqa: F401  (before any mininet import)


class DelayLineLink(Link):
    def __init__(self, node1, node2, relay1: str, relay2: str, relay_netns: str, **params):
        self.relay1, self.relay2, self.relay_netns = relay1, relay2, relay_netns
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None, node1=None,
                     node2=None, deleteIntfs=True):
        # The switch ports live in the root namespace (OVS); the relay ends in the run's
        # delay-line namespace, so that deleting that one namespace removes every delayed
        # link at once (the kernel batches it; one `ip link del` per veth takes ~17 ms).
        for intf, relay, addr in ((intfname1, self.relay1, addr1),
                                  (intfname2, self.relay2, addr2)):
            cmd = ["ip", "link", "add", "name", intf]
            if addr:
                cmd += ["address", addr]
            cmd += ["type", "veth", "peer", "name", relay, "netns", self.relay_netns]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"creating {intf}<->{relay} failed: {r.stderr.strip()}")

    def delete(self):
        # Deleting a veth end deletes its peer: the relay ends go with the switch ports.
        super().delete()


class PortTypeOVSSwitch(OVSSwitch):
    """OVSSwitch whose data ports get an OVS interface type (e.g. afxdp) when created."""

    def __init__(self, name, port_type: str = "system", **params):
        self.port_type = port_type
        super().__init__(name, **params)

    def intfOpts(self, intf):  # noqa: N802 (Mininet's API)
        opts = super().intfOpts(intf)
        if self.port_type == "afxdp" and opts:
            # generic (SKB) mode: works on veths on every kernel with XDP sockets
            opts += " type=afxdp options:xdp-mode=generic"
        return opts
