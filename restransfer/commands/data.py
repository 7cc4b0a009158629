"""`restransfer data check PATH|RECIPE`: decode every file as training would; report by path."""

from __future__ import annotations

from pathlib import Path

from restransfer.commands.output import console


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="check a dataset before training")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check", help="decode every image, report bad files, duplicates and class counts",
        description="PATH is a folder of class subfolders (or one holding train/ and val/ "
                    "or validation/ and test/), a CSV of path,label rows, or a recipe .yaml "
                    "whose data: section is checked. Exit status 1 when training would fail.")
    check.add_argument("path", help="folder, CSV file or recipe .yaml")
    check.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    check.add_argument("--limit", type=_row_limit, default=50, help="rows per table (default 50)")
    check.set_defaults(handler=_check)
    grid = sub.add_parser(
        "grid", help="write a multi-label task made offline: 2x2 grids of scikit-learn digits",
        description="Writes OUT/train|val|test/*.png and OUT/train.csv, val.csv, test.csv (path,labels rows): "
                    "each 32x32 image is a 2x2 grid whose cells are blank or hold a digit; its labels are the "
                    "digits present. The splits draw from disjoint digit images. recipes/multilabel_digits.yaml "
                    "trains on it.")
    grid.add_argument("out", type=Path, help="a new (or empty) folder")
    grid.add_argument("--digits", default="012345", help="the digits that may appear, e.g. 012345 (default)")
    grid.add_argument("--counts", type=int, nargs=3, default=(600, 200, 200), metavar=("TRAIN", "VAL", "TEST"),
                      help="grids per split (default 600 200 200)")
    grid.add_argument("--blank", type=float, default=0.3, help="chance a cell is blank (default 0.3)")
    grid.add_argument("--seed", type=int, default=0, help="seed of the digit shares and the grids")
    grid.set_defaults(handler=_grid)


def _check(args) -> int:
    from restransfer.data.check import dataset_root, inspect_listing, render_report

    listing = listing_for(Path(args.path))
    report = inspect_listing(listing)
    console(args).print(render_report(report, limit=args.limit, root=dataset_root(listing)))
    if args.json is not None:
        import json

        from restransfer.errors import ConfigError
        from restransfer.files import printable

        try:
            args.json.write_text(json.dumps(report.to_json(), indent=2))
        except OSError as error:
            raise ConfigError(f"Cannot write the --json report to {printable(str(args.json))}: "
                              f"{error.strerror or error}. Give a file path in a writable folder with space "
                              "left (the report above is complete).") from None
    return 0 if report.ok else 1


def _grid(args) -> int:
    from restransfer.data.grid import write_grid
    from restransfer.errors import DataError

    if not args.digits.isdigit():
        raise DataError(f"--digits takes the digits as one word, e.g. 0123; received {args.digits!r}.")
    if min(args.counts) < 1:
        raise DataError(f"--counts must be positive; received {list(args.counts)}.")
    tables = write_grid(args.out, counts=args.counts, digits=[int(d) for d in args.digits], blank=args.blank,
                        seed=args.seed)
    console(args).print(f"Wrote {sum(args.counts)} grids; tables: {', '.join(str(t) for t in tables.values())}.")
    return 0


def _row_limit(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of rows, 0 or more; received {text!r}")
    return value


def listing_for(path: Path):
    """The `Listing` to check for a folder, a CSV file or a recipe's ``data:`` section."""
    from restransfer.data.sources import csv_listing, folder_listing
    from restransfer.errors import DataError

    if not path.exists():
        raise DataError(f"{path} does not exist; give a data folder, a CSV file or a recipe .yaml.")
    if path.suffix.lower() in (".yaml", ".yml"):
        from restransfer.data.pipeline import make_listing
        from restransfer.recipe.plan import load_plan

        # The recipe's Plan: the same folders, resolved the same way, as `train RECIPE` reads.
        from restransfer.training.task import task_data_problem

        plan = load_plan(path)
        listing = make_listing(plan.data, plan.recipe.seed)
        if problem := task_data_problem(plan.task, listing.multi_label, f"The {plan.data.source} data"):
            raise DataError(problem)
        return listing
    if path.suffix.lower() == ".csv":
        return csv_listing(path, None, None, None, 0)
    if path.is_dir():
        splits = {name: path / name for name in ("train", "val", "validation", "test")
                  if (path / name).is_dir()}
        if "train" in splits and ("val" in splits or "validation" in splits):
            return folder_listing(splits["train"], splits.get("val", splits.get("validation")),
                                  splits.get("test"), None, 0)
        return folder_listing(path, None, None, None, 0)
    raise DataError(f"{path} is neither a folder, a .csv nor a recipe .yaml.")
