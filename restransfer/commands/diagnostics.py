"""`restransfer diagnose gradients|curves|complexity`."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("diagnose", help="gradient flow, training curves, per-stage complexity")
    sub = parser.add_subparsers(dest="diagnose_command", required=True, metavar="ACTION")

    grads = sub.add_parser("gradients", help="gradient norm per stage/block of models at initialisation")
    grads.add_argument("models", nargs="+", help="model names, e.g. plain_cifar_resnet56 cifar_resnet56")
    grads.add_argument("--level", choices=("stage", "block", "layer"), default="stage")
    grads.add_argument("--image-size", type=int, default=None, help="input size (default: the model's)")
    grads.add_argument("--batch-size", type=int, default=16)
    grads.add_argument("--num-classes", type=int, default=10)
    grads.add_argument("--seed", type=int, default=0)
    grads.add_argument("--plot", default=None, help="save a PNG of the gradient flow here")
    grads.set_defaults(handler=_gradients)

    curves = sub.add_parser("curves", help="plot the training curves of run folders on one figure")
    curves.add_argument("runs", nargs="+", help="run folders (or history.csv files)")
    curves.add_argument("--metric", action="append", default=None,
                        help="metric to plot, repeatable (default: loss and val_accuracy if logged)")
    curves.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png)")
    curves.set_defaults(handler=_curves)

    complexity = sub.add_parser("complexity", help="compare parameters and multiply-adds per stage")
    complexity.add_argument("models", nargs="+")
    complexity.add_argument("--image-size", type=int, default=None)
    complexity.add_argument("--value", choices=("params", "macs"), default="params")
    complexity.add_argument("--plot", default=None, help="save a bar chart PNG here")
    complexity.set_defaults(handler=_complexity)


def _models(names, image_size, **options):
    from restransfer.models.registry import check_model_name, create_model
    from restransfer.models.specs import SPECS

    for name in names:
        check_model_name(name)
    built = {}
    for name in names:
        size = image_size or SPECS[name].default_size
        built[name] = create_model(name, input_shape=(size, size, 3), **options)
    return built


def _gradients(args) -> int:
    import keras
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from restransfer.diagnostics.gradients import gradient_flow
    from restransfer.diagnostics.plots import plot_gradient_flow

    keras.utils.set_random_seed(args.seed)
    models = _models(args.models, args.image_size, num_classes=args.num_classes, preprocessing="tf")
    shape = next(iter(models.values())).input_shape[1:]
    rng = np.random.default_rng(args.seed)
    images = rng.uniform(0, 255, (args.batch_size, *shape)).astype("float32")
    labels = rng.integers(0, args.num_classes, args.batch_size)
    flow = gradient_flow(models, images, labels, level=args.level)

    table = Table(title=f"Gradient L2 norm per {args.level} at initialisation "
                        f"(random images and labels, batch {args.batch_size}, seed {args.seed})")
    table.add_column(args.level)
    for name in flow:
        table.add_column(name, justify="right")
    groups = list(dict.fromkeys(g for norms in flow.values() for g in norms))
    for group in groups:
        table.add_row(group, *(f"{norms[group]:.3g}" if group in norms else "" for norms in flow.values()))
    Console().print(table)
    if args.plot:
        plot_gradient_flow(flow, path=args.plot)
        print(f"wrote {args.plot}")
    return 0


def _curves(args) -> int:
    from restransfer.diagnostics.curves import load_history, plot_curves

    runs = {}
    for path in args.runs:
        label = path.rstrip("/").rsplit("/", 1)[-1]
        runs[label if label not in runs else path] = load_history(path)
    metrics = args.metric
    if not metrics:
        logged = set.intersection(*(set(h) for h in runs.values()))
        metrics = [m for m in ("loss", "val_accuracy") if m in logged] or sorted(logged)[:1]
    plot_curves(runs, metrics=metrics, path=args.out)
    print(f"wrote {args.out} ({', '.join(metrics)} of {len(runs)} runs)")
    return 0


def _complexity(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from restransfer.diagnostics.complexity import stage_table
    from restransfer.diagnostics.plots import plot_stage_bars

    tables = {name: stage_table(model) for name, model in _models(args.models, args.image_size).items()}
    table = Table(title="Parameters and multiply-adds per image")
    for column in ("model", "parameters", "multiply-adds", "largest stage (params)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, rows in tables.items():
        largest = max(rows, key=lambda r: r.trainable_params)
        table.add_row(name, f"{sum(r.trainable_params for r in rows):,}",
                      f"{sum(r.macs for r in rows) / 1e9:.3f} G", largest.stage)
    Console().print(table)
    if args.plot:
        plot_stage_bars(tables, value=args.value, path=args.plot)
        print(f"wrote {args.plot}")
    return 0
