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
    validate.add_argument("--explain", action="store_true",
                          help="print every decision the recipe implies on this machine, each with its reason "
                               "(those that need the data are taken when training and listed in train.log)")
    validate.set_defaults(handler=_validate)

    evaluate = subparsers.add_parser("evaluate", help="accuracy, per-class scores and confusion matrix of a run")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--data", default=None, help="a folder with one subfolder per class (default: the "
                                                        "recipe's validation data)")
    evaluate.add_argument("--split", choices=("val", "test"), default="val")
    evaluate.add_argument("--batch-size", type=int, default=None)
    _add_tta(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    predict = subparsers.add_parser("predict", help="top-k labels of image files")
    predict.add_argument("run", help="run folder, or a SavedModel exported from one")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--explain", action="store_true",
                         help="also save a Grad-CAM heatmap of the predicted class over each image (run folders)")
    predict.add_argument("--label", default=None, help="with --explain: the class or label to explain in every "
                         "image (default: each image's most probable)")
    predict.add_argument("--out", default=None, help="with --explain: a .png for one image, or a folder "
                                                      "(default RUN/plots/gradcam/)")
    _add_tta(predict)
    predict.set_defaults(handler=_predict)


def _add_tta(parser) -> None:
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: the mean of the probabilities of each image and its "
                             "horizontal flip")
    parser.add_argument("--tta-crops", type=int, default=None, metavar="N", choices=range(0, 6),
                        help="also average N crops (0-5: centre, then corners) of 87.5%% of each side, resized back")


def _train(args) -> int:
    from restransfer.recipe.engine import train
    from restransfer.recipe.plan import load_plan

    train(load_plan(args.recipe, args.overrides), out=args.out, force=args.force, verbose="auto")
    return 0


def _validate(args) -> int:
    from rich.console import Console

    from restransfer.commands.output import shown
    from restransfer.recipe.plan import load_plan

    plan = load_plan(args.recipe, args.overrides)
    console = Console()
    console.print(f"[green]OK[/green] {shown(str(args.recipe))}: {plan.model.name} "
                  f"(weights {shown(str(plan.model.weights))}), data source {plan.data.source}, "
                  f"{plan.image_size[0]}x{plan.image_size[1]} px, precision {plan.precision}, "
                  f"jit_compile {plan.recipe.jit_compile}.")
    for phase in plan.phases:
        console.print(f"  phase {phase.index + 1} '{shown(phase.name)}': {phase.epochs} epochs, "
                      f"{phase.optimizer.name} lr {phase.optimizer.learning_rate:g}, "
                      f"frozen {list(phase.frozen) or 'nothing'}")
    if args.explain:
        from restransfer.recipe.decisions import decide, explain
        from restransfer.training.precision import has_accelerator

        console.print("Decisions on this machine, without the data:")
        for line in explain(decide(plan, accelerator=has_accelerator())):
            console.print("  " + shown(line), highlight=False, soft_wrap=True)
    return 0


def _evaluate(args) -> int:
    from rich.table import Table

    from restransfer.commands.output import console as make_console
    from restransfer.commands.output import shown
    from restransfer.recipe.evaluate import evaluate

    report = evaluate(args.run, data=args.data, split=args.split, batch_size=args.batch_size,
                      tta=args.tta, tta_crops=args.tta_crops)
    console = make_console(args)
    tta = f"; TTA: {', '.join(report['tta'])}" if report.get("tta") else ""
    if report.get("task") == "multi_label":
        average_precision = "n/a" if report["map"] is None else f"{report['map']:.4f}"
        console.print(f"{shown(report['data'])}: {report['num_images']} images, mAP {average_precision}, macro F1 "
                      f"{report['macro_f1']:.4f}, micro F1 {report['micro_f1']:.4f}, exact match "
                      f"{report['exact_match']:.4f}, loss {report['loss']:.4f}{tta}; thresholds: "
                      f"{shown(report['thresholds_from'])}")
        columns, rows = ("label", "AP", "precision", "recall", "f1", "threshold", "support"), [
            (name, "" if s["ap"] is None else f"{s['ap']:.3f}", f"{s['precision']:.3f}", f"{s['recall']:.3f}",
             f"{s['f1']:.3f}", f"{s['threshold']:.3f}", str(s["support"])) for name, s in report["per_label"].items()]
    else:
        summary = (f"accuracy {report['accuracy']:.4f}, balanced accuracy {report['balanced_accuracy']:.4f}, "
                   f"loss {report['loss']:.4f}")
        if "top5_accuracy" in report:
            summary += f", top-5 accuracy {report['top5_accuracy']:.4f}"
        console.print(f"{shown(report['data'])}: {report['num_images']} images, {summary}, "
                      f"macro F1 {report['macro_f1']:.4f}{tta}")
        columns, rows = ("class", "precision", "recall", "f1", "support"), [
            (name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))
            for name, s in report["per_class"].items()]
    table = Table(title="per label" if report.get("task") == "multi_label" else "per class")
    for column in columns:
        table.add_column(column, justify="left" if column in ("class", "label") else "right")
    for row in rows:
        table.add_row(shown(row[0]), *row[1:])
    console.print(table)
    files = report.get("interpretation", {})
    if files:
        console.print("interpretation files: " + ", ".join(files.values()), soft_wrap=True)
    return 0


def _predict(args) -> int:
    from pathlib import Path

    from rich.table import Table

    from restransfer.commands.output import console, shown
    from restransfer.errors import ConfigError

    if args.out is not None and not args.explain:
        raise ConfigError("--out names where --explain saves the Grad-CAM images; pass --explain too.")
    if args.label is not None and not args.explain:
        raise ConfigError("--label names the class --explain draws Grad-CAM for; pass --explain too.")
    if (Path(args.run) / "saved_model.pb").is_file():  # an exported SavedModel, not a run folder
        if args.tta or args.tta_crops:
            raise ConfigError("--tta needs the run folder (the views are fed to the Keras model); "
                              f"{args.run} is an exported SavedModel.")
        if args.explain:
            raise ConfigError("--explain needs the run folder (Grad-CAM reads the Keras model's last stage); "
                              f"{args.run} is an exported SavedModel.")
        from restransfer.export.saved_model import predict_saved_model as predict
    else:
        from restransfer.recipe.predict import predict
    options = {"tta": args.tta, "tta_crops": args.tta_crops} if args.tta or args.tta_crops else {}
    results = predict(args.run, args.images, top_k=args.top_k, **options)
    multi_label = any("labels" in result for result in results)
    table = Table()
    table.add_column("image")
    if multi_label:
        table.add_column("labels over their thresholds (probability)")
    table.add_column("top predictions (probability)")
    for result in results:
        cells = [", ".join(f"{label} {p:.3f}" for label, p in result[key]) or "(none)"
                 for key in (("labels", "top") if multi_label else ("top",))]
        table.add_row(shown(result["image"]), *(shown(cell) for cell in cells))
    console().print(table)
    if args.explain:
        from restransfer.recipe.predict import explain

        for result in explain(args.run, args.images, out=args.out, label=args.label):
            print(f"Grad-CAM ({result['stage']}) of {result['class']} for {result['image']}: {result['explanation']}")
    return 0
