"""The built-in planner: plans (DAGs of tool calls) validated, previewed, approved as a whole, and run
step by step through the same audited pipeline as every call."""

from gateway.planner.executor import PlanExecutor, RunReport, StepReport
from gateway.planner.plan import PLAN_TOOLS, Plan, Ref, Step
from gateway.planner.preview import Cover, PlanPreview, Previewer, StepPreview
from gateway.planner.validate import Problem, validate

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
