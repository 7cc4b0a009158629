"""`restransfer fit DATA`: train a class-folder tree (or a CSV) without writing a recipe."""

from __future__ import annotations

_SET_HELP = "override a key of the chosen recipe, e.g. --set data.augment.flip=horizontal (repeatable, as train)"


def register(subparsers) -> None:
    fit = subparsers.add_parser(
        "fit", help="train a folder of class subfolders (or a CSV) with a recipe chosen from the data",
        description="Choose a recipe from the data (image count and size, classes, balance), print why, "
                    "and train it exactly as `restransfer train` does. The run folder's recipe.yaml holds "
                    "the whole recipe: `restransfer train RUN/recipe.yaml` trains it again.")
    fit.add_argument("data", help="a folder with one subfolder per class, or a CSV of path,label rows")
    fit.add_argument("--val", default=None, metavar="FOLDER", help="validation data of the same classes")
    fit.add_argument("--val-split", type=float, default=None, metavar="F",
                     help="validate on a stratified share F of DATA instead (default 0.2 without --val)")
    fit.add_argument("--model", default=None, help="a model name (restransfer models list); default: chosen")
    fit.add_argument("--weights", default=None, metavar="W",
                     help="anything model.weights takes: imagenet, a weights file, a run folder")
    fit.add_argument("--image-size", type=int, default=None, metavar="N")
    fit.add_argument("--epochs", type=int, default=None, metavar="N", help="epochs in all (default: chosen)")
    fit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    fit.add_argument("--out", default=None, metavar="RUN", help="run folder (default: runs/<data name>)")
    fit.add_argument("--force", action="store_true", help="delete the run in --out and train again")
    fit.add_argument("--dry-run", action="store_true", help="print the chosen recipe; train nothing")
    fit.set_defaults(handler=_fit)


def _fit(args) -> int:
    from restransfer.recipe.fit import fit

    if args.epochs is not None and args.epochs < 1:
        from restransfer.errors import ConfigError

        raise ConfigError(f"--epochs must be at least 1; received {args.epochs}.")
    result = fit(args.data, val=args.val, val_split=args.val_split, model=args.model, weights=args.weights,
                 image_size=args.image_size, epochs=args.epochs, overrides=args.overrides, out=args.out,
                 dry_run=args.dry_run, force=args.force)
    if args.dry_run:
        print(result.text, end="")
    return 0
