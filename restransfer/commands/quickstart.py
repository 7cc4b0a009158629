"""`restransfer quickstart`: the offline transfer-learning demo (see ``restransfer.quickstart``)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("quickstart", help="offline demo: pretrain on 42 rendered letters, transfer to handwritten digits 5-9")
    parser.add_argument("--out", default="runs/quickstart", help="folder for the three runs")
    parser.add_argument("--force", action="store_true", help="replace earlier quickstart runs in --out")
    parser.set_defaults(handler=_quickstart)


def _quickstart(args) -> int:
    from restransfer.quickstart import quickstart

    quickstart(args.out, force=args.force)
    return 0
