"""The plan file the controller routes on: format ``edwc-plan/1``.

One definition of the format serves the builder that writes it and every reader:
`topology.plan` (make_plan writes it; parse_plan / load_plan read and validate it, each error
naming the offending field, e.g. ``links[3].delay_ms_ab: must be a number >= 0, got 'x'``).
"""

from topology.plan import (  # noqa: F401  (re-exported for the controller)
    MAX_OF_PORT,
    PLAN_FORMAT,
    HostPlan,
    LinkPlan,
    Plan,
    PlanError,
    SwitchPlan,
    load_plan,
    parse_plan,
)

Switch, Host, Link = SwitchPlan, HostPlan, LinkPlan
