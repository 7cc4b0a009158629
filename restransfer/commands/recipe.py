"""`restransfer train | validate | evaluate | predict`."""

from __future__ import annotations

_SET_HELP = "override a recipe key, e.g. --set phases[0].epochs=3 (repeatable; value parsed as YAML)"


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train a recipe into a run folder (resumes an interrupted run)",
        description="Train a recipe. Rerunning the same command on an interrupted run resumes it from "
                    "the last complete epoch; a finished run is never overwritten without --force.")
    train.add_argument("recipe", help="recipe YAML file")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    train.add_argument("--out", default=None, help="run folder (default: runs/<recipe name>)")
    train.add_argument("--force", action="store_true", help="delete the run in --out and train again")
    train.set_defaults(handler=_train)

    validate = subparsers.add_parser("validate", help="check a recipe without training")
    validate.add_argument("recipe")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help=_SET_HELP)
    validate.set_defaults(handler=_validate)

    evaluate = subparsers.add_parser("evaluate", help="accuracy, per-class scores and confusion matrix of a run")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--data", default=None, help="a folder with one subfolder per class (default: the "
                                                        "recipe's validation data)")
    evaluate.add_argument("--split", choices=("val", "test"), default="val")
    evaluate.add_argument("--batch-size", type=int, default=None)
    evaluate.set_defaults(handler=_evaluate)

    predict = subparsers.add_parser("predict", help="top-k labels of image files")
    predict.add_argument("run", help="run folder, or a SavedModel exported from one")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5)
    predict.set_defaults(handler=_predict)


def _train(args) -> int:
    from restransfer.recipe.engine import train
    from restransfer.recipe.plan import load_plan

    train(load_plan(args.recipe, args.overrides), out=args.out, force=args.force, verbose="auto")
    return 0


def _validate(args) -> int:
    from rich.console import Console
    from rich.markup import escape

    from restransfer.recipe.plan import load_plan

    plan = load_plan(args.recipe, args.overrides)
    recipe = plan.recipe
    console = Console()
    console.print(f"[green]OK[/green] {escape(str(args.recipe))}: {plan.model.name} "
                  f"(weights {escape(str(plan.model.weights))}), data source {plan.data.source}, "
                  f"{plan.image_size[0]}x{plan.image_size[1]} px, precision {recipe.precision}, "
                  f"jit_compile {recipe.jit_compile}.")
    for phase in plan.phases:
        config = phase.config
        console.print(f"  phase {phase.index + 1} '{escape(phase.name)}': {phase.epochs} epochs, "
                      f"{config.optimizer.name} lr {config.optimizer.learning_rate:g}, "
                      f"frozen {list(phase.frozen) or 'nothing'}")
    return 0


def _evaluate(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from restransfer.recipe.evaluate import evaluate

    report = evaluate(args.run, data=args.data, split=args.split, batch_size=args.batch_size)
    console = Console()
    summary = f"accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f}"
    if "top5_accuracy" in report:
        summary += f", top-5 accuracy {report['top5_accuracy']:.4f}"
    console.print(f"{report['data']}: {report['num_images']} images, {summary}, macro F1 {report['macro_f1']:.4f}")
    table = Table(title="per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, scores in report["per_class"].items():
        table.add_row(name, f"{scores['precision']:.3f}", f"{scores['recall']:.3f}", f"{scores['f1-score']:.3f}",
                      str(scores["support"]))
    console.print(table)
    return 0


def _predict(args) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    if (Path(args.run) / "saved_model.pb").is_file():  # an exported SavedModel, not a run folder
        from restransfer.export.saved_model import predict_saved_model as predict
    else:
        from restransfer.recipe.predict import predict
    table = Table()
    table.add_column("image")
    table.add_column("top predictions (probability)")
    for result in predict(args.run, args.images, top_k=args.top_k):
        table.add_row(result["image"], ", ".join(f"{label} {p:.3f}" for label, p in result["top"]))
    Console().print(table)
    return 0
