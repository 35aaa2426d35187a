"""``python -m emulation.delayline CONFIG.json``: run one relay process (see
:func:`emulation.delayline.process.main`)."""

import sys

from emulation.delayline.process import main

if __name__ == "__main__":
    sys.exit(main())
