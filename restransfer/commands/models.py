"""`restransfer models list|show`."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list models, show a model's stages")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    list_parser = sub.add_parser("list", help="list model names")
    list_parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnext*'")
    list_parser.set_defaults(handler=_list)
    show = sub.add_parser("show", help="per-stage output shape, parameters and multiply-adds")
    show.add_argument("name")
    show.add_argument("--image-size", type=int, default=None, help="input size (default 224; CIFAR 32)")
    show.add_argument("--num-classes", type=int, default=None)
    show.add_argument("--style", choices=("torchvision", "keras"), default=None,
                      help="default: the model's first style (torchvision; keras for ResNet V2)")
    show.set_defaults(handler=_show)


def _list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from restransfer.models.registry import list_models
    from restransfer.models.specs import SPECS

    table = Table(title="restransfer models")
    table.add_column("name", no_wrap=True)  # names are for copying: never folded on a narrow terminal
    for column in ("block", "blocks per stage", "groups x width", "stem", "shortcut", "extras", "styles"):
        table.add_column(column)
    for name in list_models(args.pattern):
        spec = SPECS[name]
        shortcut = (spec.shortcut + (" avg-pool" if spec.avg_down else "")) if spec.residual else "none (plain)"
        extras = ", ".join(text for text, present in (("SE", spec.se), ("pre-activation", spec.preact)) if present)
        table.add_row(name, spec.block, "-".join(map(str, spec.repeats)), f"{spec.groups}x{spec.width_per_group}",
                      spec.stem, shortcut, extras or "-", "/".join(spec.styles))
    Console().print(table)
    return 0


def _show(args) -> int:
    from rich.console import Console

    from restransfer.diagnostics.complexity import render_stage_table
    from restransfer.models.registry import check_model_name, create_model
    from restransfer.models.specs import SPECS

    check_model_name(args.name)
    size = args.image_size or SPECS[args.name].default_size
    model = create_model(args.name, num_classes=args.num_classes, style=args.style,
                         input_shape=(size, size, 3))
    Console().print(render_stage_table(model))
    return 0
