"""`restransfer export RUN --format ...` and `restransfer export verify DIR`."""

from __future__ import annotations

import argparse

from restransfer.errors import ConfigError
from restransfer.export.formats import FORMATS, QUANTIZATIONS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="export a run as SavedModel, .keras or TFLite; verify an export",
        description="restransfer export RUN --format saved_model|keras|tflite [--out DIR]\n"
                    "restransfer export verify DIR [--images IMG ...] [--model RUN/model.keras]\n\n"
                    "Every export is verified on reload in a fresh process without restransfer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="RUN|verify", help="a run folder, or the word 'verify'")
    parser.add_argument("directory", nargs="?", metavar="DIR", help="with 'verify': the export directory")
    parser.add_argument("--format", choices=FORMATS, help="what to export")
    parser.add_argument("--out", help="export directory (default RUN/export/<format>); must be new or empty")
    parser.add_argument("--quantize", choices=QUANTIZATIONS,
                        help="TFLite: also write a float16 or dynamic-range quantised model")
    parser.add_argument("--images", nargs="+", metavar="IMG",
                        help="export: sample images to store; verify: images to check instead of the samples")
    parser.add_argument("--model", help="verify --images: the Keras model to compare with "
                                        "(default the run's model.keras recorded at export)")
    parser.add_argument("--no-verify", action="store_true", help="skip the verification after export")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="saved_model: refuse images whose header declares more than N pixels "
                             "(width x height), before decoding (default 50,000,000)")
    parser.set_defaults(handler=_export)


def _export(args) -> int:
    if args.target == "verify":
        if not args.directory:
            raise ConfigError("`restransfer export verify` needs the export directory: export verify DIR.")
        return _verify(args)
    if args.directory:
        raise ConfigError(f"Unexpected argument '{args.directory}'. Usage: restransfer export RUN --format FORMAT.")
    if not args.format:
        raise ConfigError(f"Pass --format, one of {list(FORMATS)}: restransfer export {args.target} --format saved_model.")
    from restransfer.recipe.export_run import export_run

    options = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    result = export_run(args.target, args.format, args.out, quantize=args.quantize,
                        verify=not args.no_verify, samples=args.images, **options)
    print(result)
    if result.verification is not None:
        print(result.verification.render_signatures())
    return 0


def _verify(args) -> int:
    from restransfer.export.verify import verify_export

    report = verify_export(args.directory, images=args.images, model=args.model)
    print(report.render_signatures())
    print(report)
    return 0 if report.passed else 1
