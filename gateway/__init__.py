"""The gateway agent: the CATS service-metric agent (C-SMA) on each data-center host.

It serves jobs on TCP SERVICE_PORT (so capacity really falls and recovers) and advertises
its L0 metrics (free accelerator units, utilization, queue, processing delay, energy price,
renewable share) to the controller in the message defined in gateway.protocol.
"""

from topology.addressing import ADV_ADDR, ADV_PORT, SERVICE_PORT

from .protocol import (
    MAGIC,
    MAX_BODY,
    VERSION,
    Advert,
    AdvertError,
    decode_advert,
    encode_advert,
)

__all__ = ["ADV_ADDR", "ADV_PORT", "MAGIC", "MAX_BODY", "SERVICE_PORT", "VERSION", "Advert",
           "AdvertError", "decode_advert", "encode_advert"]
