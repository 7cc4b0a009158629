"""``restransfer report RUN``: the run's HTML page, with what its recipe decided read from its Plan."""

from __future__ import annotations

from pathlib import Path

from restransfer.diagnostics.report import run_report
from restransfer.recipe.plan import Plan, run_plan
from restransfer.runs import RunFolder


def report(run_dir: str | Path, out: str | Path | None = None, *, plan: Plan | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``out``) for a finished run; returns the path.

    Args:
        run_dir: the run folder.
        out: the HTML file (default ``RUN/report.html``).
        plan: the run's Plan when the caller holds it (training's end); else read from the run.
    """
    plan = plan if plan is not None else run_plan(RunFolder(run_dir))
    return run_report(run_dir, out, phases=[(phase.name, list(phase.frozen)) for phase in plan.phases],
                      model_name=plan.model.name, weights=str(plan.recipe.model.weights or "none"),
                      precision=str(plan.recipe.precision))


__all__ = ["report"]
