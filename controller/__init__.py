"""os-ken OpenFlow 1.3 controller for the EDWC backbone."""
