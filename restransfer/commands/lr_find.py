"""`restransfer lr-find RECIPE [--phase N]`: the learning-rate range test on a recipe's phase."""

from __future__ import annotations

from pathlib import Path

_SET_HELP = "override a recipe key, e.g. --set model.weights=runs/head (repeatable; value parsed as YAML)"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lr-find", help="learning-rate range test on a phase's model, freezing and data (writes no checkpoint)",
        description="Train the phase's model for a few steps at an exponentially rising learning rate, with "
                    "its frozen stages, optimizer, weight decay, per-stage rates and training batches, until "
                    "the smoothed loss diverges; print the suggested rate and save the plot. The weights are "
                    "thrown away and no run folder is written. A later phase starts from model.weights: set "
                    "it to a run folder that trained the earlier phases.")
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--phase", default="1",
                        help="the phase: its number (1 = first, as the training log counts) or its name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    parser.add_argument("--min-lr", type=float, default=1e-7, help="first step's rate (default 1e-7)")
    parser.add_argument("--max-lr", type=float, default=10.0, help="last step's rate (default 10)")
    parser.add_argument("--steps", type=int, default=100, help="steps from --min-lr to --max-lr (default 100)")
    parser.add_argument("--plot", default=None,
                        help="PNG of loss against rate (default: lr_find-<recipe>-phase<N>.png here)")
    parser.add_argument("--json", default=None, help="also write the curve and the suggestion as JSON here")
    parser.set_defaults(handler=_lr_find)


def _lr_find(args) -> int:
    import json

    from restransfer.recipe.lr_find import lr_find_plan, phase_index
    from restransfer.recipe.plan import load_plan

    plan = load_plan(args.recipe, args.overrides)
    index = phase_index(plan, args.phase)
    result = lr_find_plan(plan, phase=index, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps)
    configured = plan.phases[index].config.optimizer.learning_rate
    print(f"Stopped: {result.stopped} after {len(result.losses)} steps, at rate {result.learning_rates[-1]:.3g}.")
    print(f"Smoothed loss lowest at rate {result.min_loss_lr:.3g}; the recipe's rate is {configured:g}.")
    if result.suggested is None:
        print("No suggestion: the smoothed loss never fell. Lower --min-lr or check the data and labels.")
    else:
        print(f"Suggested learning rate: {result.suggested:.3g} (the steepest fall of the smoothed loss).")
    plot = Path(args.plot or f"lr_find-{plan.name}-phase{index + 1}.png")
    result.plot(plot, title=f"{plan.name}, phase {index + 1} '{plan.phases[index].name}'")
    print(f"wrote {plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
