"""The address plan of every emulated network: one place for the numbers that the
topology builder, the controller and the gateway agents must agree on.

- Hosts (one per site with an end host) take addresses from HOST_SUBNET in plan order.
- CS-IDs, the anycast addresses that name services, live at the top of that /16, in
  SERVICE_NET, so that clients ARP for them on-link (the controller answers for them);
  .0, .255 and the advertisement collector are reserved.
- Gateway agents serve jobs on SERVICE_PORT (a service may name another port) and send
  their advertisements to ADV_ADDR:ADV_PORT, where the switch punts them to the controller.
"""

from __future__ import annotations

import ipaddress

HOST_SUBNET = ipaddress.ip_network("10.0.0.0/16")
SERVICE_NET = ipaddress.ip_network("10.0.255.0/24")
ADV_ADDR = "10.0.255.254"  # the advertisement collector (answered by no host)
ADV_PORT = 6400
SERVICE_PORT = 7000
RESERVED = frozenset({SERVICE_NET.network_address, SERVICE_NET.broadcast_address,
                      ipaddress.ip_address(ADV_ADDR)})
