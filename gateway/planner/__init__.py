"""The built-in planner: plans (DAGs of tool calls) validated, previewed, approved as a whole, and run
step by step through the same audited pipeline as every call."""

from gateway.planner.executor import PlanExecutor, RunReport, StepReport
from gateway.planner.plan import Plan, Ref, Step
from gateway.planner.preview import Cover, PlanPreview, Previewer, StepPreview
from gateway.planner.validate import Problem, validate

PLAN_TOOLS = frozenset(
    {"gateway.plan_validate", "gateway.plan_preview", "gateway.plan_run", "gateway.plan_status", "gateway.plan_draft"}
)
"""The planner's own tools: a plan may not contain them (no plans inside plans)."""

__all__ = [
    "PLAN_TOOLS",
    "Cover",
    "Plan",
    "PlanExecutor",
    "PlanPreview",
    "Previewer",
    "Problem",
    "Ref",
    "RunReport",
    "Step",
    "StepPreview",
    "StepReport",
    "validate",
]
