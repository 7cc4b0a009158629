"""`restransfer report RUN`: one self-contained HTML page about a finished run."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="write RUN/report.html: recipe, stages, metrics, figures, top losses",
        description="Write one HTML page about a finished run that opens offline (figures embedded). "
                    "Run `restransfer evaluate RUN` first to include the top losses.")
    parser.add_argument("run", help="run folder")
    parser.add_argument("--out", default=None, help="the HTML file (default RUN/report.html)")
    parser.set_defaults(handler=_report)


def _report(args) -> int:
    from restransfer.recipe.report import report

    print(f"wrote {report(args.run, args.out)}")
    return 0
