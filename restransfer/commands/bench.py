"""`restransfer bench train|inference|pipeline|maxbatch|transfer|calibration`: measurements as JSON."""

from __future__ import annotations

# restransfer.bench.transfer.FREEZES and INITS (tests/test_bench.py checks they agree): the
# package would load Keras.
TRANSFER_FREEZES = ("none", "conv1", "conv1-2", "conv1-3", "all_but_head")
TRANSFER_INITS = ("transfer", "scratch")
CALIBRATION_TASKS = ("quickstart", "imbalance")  # restransfer.bench.calibration.TASKS
_BOOL = {"true": True, "false": False, "auto": "auto", "on": True, "off": False}


def _jit(value: str):
    try:
        return _BOOL[value.lower()]
    except KeyError:
        import argparse

        raise argparse.ArgumentTypeError(f"expected true, false or auto; got {value!r}") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="training and inference throughput vs keras.applications")
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="ACTION")

    train = sub.add_parser(
        "train", help="images/s through fit() on synthetic data, side by side with keras.applications",
        description="Every value list multiplies into cases; each case measures our model and the "
                    "keras.applications ResNet of its depth, interleaved round by round.",
    )
    train.add_argument("--preset", help="named settings: cpu, gpu, gpu-lease, gpu-smoke (value options then filter nothing; "
                                        "--steps/--rounds/--warmup still override)")
    train.add_argument("--models", nargs="+", default=["resnet50"])
    train.add_argument("--style", choices=("keras", "torchvision"), default="keras")
    train.add_argument("--image-size", type=int, nargs="+", default=[224])
    train.add_argument("--batch-size", type=int, nargs="+", default=[32])
    train.add_argument("--precision", nargs="+", default=["float32"],
                       help="Keras dtype policies: float32, mixed_bfloat16, mixed_float16")
    train.add_argument("--jit-compile", type=_jit, nargs="+", default=["auto"], help="true, false or auto")
    train.add_argument("--no-reference", action="store_true", help="skip the keras.applications model")
    train.add_argument("--steps", type=int, help="timed steps per model per round (default 10)")
    train.add_argument("--rounds", type=int, help="rounds of alternation between ours and the reference (default 3)")
    train.add_argument("--warmup", type=int, help="untimed steps after compilation (default 2)")
    train.add_argument("--peak-tflops", type=float, help="device peak for MFU (H100/H200/A100 known)")
    train.add_argument("--out", help="write the JSON results here")
    train.set_defaults(handler=_train)

    maxbatch = sub.add_parser("maxbatch", help="the largest training batch that fits in device memory")
    maxbatch.add_argument("--models", nargs="+", default=["resnet50", "resnext101_32x8d"])
    maxbatch.add_argument("--image-size", type=int, default=224)
    maxbatch.add_argument("--precision", default="mixed_bfloat16")
    maxbatch.add_argument("--start", type=int, default=256, help="first batch size tried")
    maxbatch.add_argument("--limit", type=int, default=4096, help="stop doubling here")
    maxbatch.add_argument("--timeout", type=int, default=600, help="seconds per try")
    maxbatch.add_argument("--out")
    maxbatch.set_defaults(handler=_maxbatch)

    infer = sub.add_parser("inference", help="images/s of the Keras model and of its exported SavedModel")
    infer.add_argument("--models", nargs="+", default=["resnet50"])
    infer.add_argument("--style", choices=("keras", "torchvision"), default="keras")
    infer.add_argument("--image-size", type=int, default=224)
    infer.add_argument("--batch-size", type=int, default=32)
    infer.add_argument("--steps", type=int, default=10)
    infer.add_argument("--rounds", type=int, default=3)
    infer.add_argument("--out")
    infer.set_defaults(handler=_inference)

    pipe = sub.add_parser("pipeline", help="fine-tune images/s with the real input pipeline vs synthetic data")
    pipe.add_argument("--model", default="resnet18")
    pipe.add_argument("--image-size", type=int, default=128)
    pipe.add_argument("--batch-size", type=int, default=16)
    pipe.add_argument("--images", type=int, default=256, help="JPEGs generated for the folder source")
    pipe.add_argument("--steps", type=int, default=8)
    pipe.add_argument("--rounds", type=int, default=2)
    pipe.add_argument("--workdir", help="folder for the generated JPEGs (default: a temporary folder)")
    pipe.add_argument("--out")
    pipe.set_defaults(handler=_pipeline)

    transfer = sub.add_parser(
        "transfer", help="transfer vs scratch per frozen stages on the quickstart task, mean +- sd over seeds",
        description="For every seed: pretrain recipes/quickstart_source.yaml, then train quickstart_target "
                    "(transfer) and quickstart_scratch (scratch) once per freeze choice; accuracy before and "
                    "after precise BN, seconds, a logistic-regression probe on the same training images, and "
                    "the head-only phase with and without the feature cache, side by side.",
    )
    transfer.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    transfer.add_argument("--freeze", nargs="+", choices=TRANSFER_FREEZES, default=list(TRANSFER_FREEZES))
    transfer.add_argument("--init", nargs="+", choices=TRANSFER_INITS, default=list(TRANSFER_INITS))
    transfer.add_argument("--set", dest="target_overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override both target recipes (the same budget for transfer and scratch)")
    transfer.add_argument("--source-set", dest="source_overrides", action="append", default=[],
                          metavar="KEY=VALUE", help="override the source recipe")
    transfer.add_argument("--no-cache-compare", action="store_true",
                          help="skip the head-only run without the feature cache")
    transfer.add_argument("--cache-image-sizes", type=int, nargs="*", default=[32], metavar="PX",
                          help="also time the cached vs uncached head-only phase at these image sizes "
                               "(default 32; none: only the recipe's)")
    transfer.add_argument("--no-probe", action="store_true", help="skip the logistic-regression probe")
    transfer.add_argument("--keras-baseline", action="store_true",
                          help="also run the same task written as a plain Keras script per seed (its own source, "
                               "transfer, head-only and scratch), for the restransfer vs plain Keras table")
    transfer.add_argument("--smoke", action="store_true",
                          help="tiny settings (one seed, two runs, one epoch of pretraining): checks the code path")
    transfer.add_argument("--workdir", default="runs/bench-transfer", help="run folders (replaced)")
    transfer.add_argument("--out", help="write the JSON results here (after every run)")
    transfer.set_defaults(handler=_transfer)
    _register_calibration(sub)

    imbalance = sub.add_parser(
        "imbalance", help="class weights none vs auto on digit folders of 36 to 3 images, mean +- sd over seeds",
        description="Digits 5-9 as PNG class folders with 36/18/9/5/3 training images and balanced validation "
                    "and test folders of 30 per class; the quickstart's source run as weights; for every seed "
                    "the shipped target recipe's settings once per data.class_weight; test-folder balanced "
                    "accuracy, macro F1 and the smallest class's recall, with and without TTA.")
    imbalance.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    imbalance.add_argument("--class-weight", dest="weightings", nargs="+", default=["none", "auto"],
                           help="data.class_weight values to compare")
    imbalance.add_argument("--set", dest="target_overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="override every target run")
    imbalance.add_argument("--smoke", action="store_true", help="tiny settings: checks the code path")
    imbalance.add_argument("--workdir", default="runs/bench-imbalance", help="run folders (replaced)")
    imbalance.add_argument("--out", help="write the JSON results here (after every run)")
    imbalance.set_defaults(handler=_imbalance)
    multilabel = sub.add_parser(
        "multilabel", help="the multi-label recipe against one-vs-rest logistic regressions, mean +- sd over seeds",
        description="Per seed: digit-grid data (`restransfer data grid`), recipes/multilabel_digits.yaml trained on "
                    "it, and one-vs-rest logistic regressions on its pixels and on frozen source features; "
                    "thresholds chosen on the validation grids, scikit-learn's scores on the test grids.")
    multilabel.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    multilabel.add_argument("--set", dest="recipe_overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a key of the multi-label recipe (repeatable)")
    multilabel.add_argument("--smoke", action="store_true", help="tiny settings: checks the code path")
    multilabel.add_argument("--workdir", default="runs/bench-multilabel", help="run folders (replaced)")
    multilabel.add_argument("--out", help="write the JSON results here (after every seed)")
    multilabel.set_defaults(handler=_multilabel)


def _register_calibration(sub) -> None:
    calibration = sub.add_parser(
        "calibration", help="temperature scaling on the quickstart task: held-out ECE before and after, 5 seeds",
        description="For every seed: pretrain recipes/quickstart_source.yaml, fine-tune quickstart_target with "
                    "calibration: temperature (fitted on the half of its validation images that did not choose "
                    "the kept epoch), then measure the expected "
                    "calibration error and NLL on the target classes' digits that neither split holds.")
    calibration.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    calibration.add_argument("--task", choices=CALIBRATION_TASKS, default="quickstart",
                             help="imbalance: the imbalance benchmark's digit folders (36 to 3 training images, "
                                  "data.class_weight auto), scored on their test folder")
    calibration.add_argument("--set", dest="target_overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override the target recipe")
    calibration.add_argument("--source-set", dest="source_overrides", action="append", default=[],
                             metavar="KEY=VALUE", help="override the source recipe")
    calibration.add_argument("--workdir", default="runs/bench-calibration", help="run folders (replaced)")
    calibration.add_argument("--out", help="write the JSON results here (after every seed)")
    calibration.set_defaults(handler=_calibration)


def _calibration(args) -> int:
    import dataclasses

    from restransfer.bench.calibration import CalibrationSettings, markdown_summary, run_calibration, summarize
    from restransfer.bench.results import write_results
    from restransfer.recipe.load import parse_overrides

    settings = CalibrationSettings(seeds=tuple(args.seeds), task=args.task,
                                   source_overrides=dict(parse_overrides(args.source_overrides)),
                                   target_overrides=dict(parse_overrides(args.target_overrides)))

    def write(record) -> None:
        records.append(record)
        print(f"seed {record['seed']}: temperature {record['temperature']:.3f}, held-out ECE "
              f"{record['heldout_ece_before']:.4f} -> {record['heldout_ece_after']:.4f} "
              f"({record['heldout_images']} images)", flush=True)
        if args.out:
            write_results(args.out, records, settings={**dataclasses.asdict(settings), "workdir": args.workdir,
                                                       "summary": summarize(records)}, notes=_CALIBRATION_NOTES)

    records: list[dict] = []
    run_calibration(settings, args.workdir, on_record=write)
    print(markdown_summary(summarize(records)))
    if args.out:
        print(f"wrote {args.out}")
    return 0


_CALIBRATION_NOTES = (
    "Each seed is one restransfer.train run of quickstart_source.yaml and one of quickstart_target.yaml with "
    "calibration: temperature, which fits the temperature on the half of each class's validation images that "
    "did not choose the kept epoch (calibration_holdout 0.5; val_ece_* and val_images are on that half, "
    "in-sample). heldout_* are measured on the digits of the target's classes that are in neither "
    "its training nor its validation split: before = the saved model's logits times the temperature (the "
    "trained model), after = model.keras as saved. ECE: 15 equal-width confidence bins (Guo et al.); "
    "adaptive ECE: 15 equal-mass bins (Nixon et al. 2019), steadier on a few hundred images; Brier: "
    "scikit-learn's multiclass brier_score_loss. summary.*_after_minus_before pairs each seed's values. "
    "With task imbalance the target is trained on the imbalance benchmark's digit folders of that seed "
    "(one source run of seed 0, data.class_weight as the recipe says: auto) and heldout_* are its test folder."
)


def _print_and_write(records, args, settings, notes="") -> int:
    from restransfer.bench.results import markdown_table, write_results

    print(markdown_table(records))  # plain markdown, ready for a README
    if args.out:
        path = write_results(args.out, records, settings=settings, notes=notes)
        print(f"wrote {path}")
    return 0


def _train(args) -> int:
    import itertools

    from restransfer.bench.presets import get_preset
    from restransfer.bench.training import TrainCase, run_training
    from restransfer.models.registry import check_model_name

    if args.preset:
        preset = get_preset(args.preset)
        cases = list(preset.cases)
        steps, rounds, warmup = preset.steps, preset.rounds, preset.warmup
    else:
        for name in args.models:
            check_model_name(name)
        cases = [
            TrainCase(model, image_size=size, batch_size=batch, precision=precision, jit_compile=jit,
                      style=args.style, reference=not args.no_reference)
            for model, size, batch, precision, jit in itertools.product(
                args.models, args.image_size, args.batch_size, args.precision, args.jit_compile)
        ]
        steps, rounds, warmup = 10, 3, 2
    steps = args.steps or steps
    rounds = args.rounds or rounds
    warmup = args.warmup if args.warmup is not None else warmup
    settings = {"preset": args.preset, "steps": steps, "rounds": rounds, "warmup": warmup,
                "peak_tflops": args.peak_tflops, "cases": [c.case_id for c in cases]}
    records = []
    for case in cases:
        records += run_training([case], steps=steps, rounds=rounds, warmup=warmup, peak_tflops=args.peak_tflops)
        if args.out:  # after every case: a run cut short by a device lease keeps what it measured
            from restransfer.bench.results import write_results

            write_results(args.out, records, settings={**settings, "complete": False})
    settings["complete"] = True
    return _print_and_write(records, args, settings)


def _maxbatch(args) -> int:
    from restransfer.bench.maxbatch import largest_batch

    records = [
        largest_batch(model, image_size=args.image_size, precision=args.precision, start=args.start,
                      limit=args.limit, timeout=args.timeout)
        for model in args.models
    ]
    for record in records:
        print(f"{record['model']}: largest batch {record['largest_batch']} "
              f"(first failure {record['first_failure']})")
    if args.out:
        from restransfer.bench.results import write_results

        print(f"wrote {write_results(args.out, records, settings=vars(args) | {'handler': None})}")
    return 0


def _inference(args) -> int:
    from restransfer.bench.inference import run_inference

    records = [
        record
        for model in args.models
        for record in run_inference(model, style=args.style, image_size=args.image_size,
                                    batch_size=args.batch_size, steps=args.steps, rounds=args.rounds)
    ]
    for record in records:
        print(f"{record['model']} {record['implementation']}: {record['img_per_s']:.1f} img/s")
    if args.out:
        from restransfer.bench.results import write_results

        print(f"wrote {write_results(args.out, records, settings=vars(args) | {'handler': None})}")
    return 0


def _pipeline(args) -> int:
    from restransfer.bench.pipeline import run_pipeline

    records = run_pipeline(args.model, image_size=args.image_size, batch_size=args.batch_size,
                           images=args.images, steps=args.steps, rounds=args.rounds, workdir=args.workdir)
    for record in records:
        print(f"{record['model']} {record['data']}: {record['img_per_s']:.1f} img/s")
    if args.out:
        from restransfer.bench.results import write_results

        print(f"wrote {write_results(args.out, records, settings=vars(args) | {'handler': None})}")
    return 0


def _transfer(args) -> int:
    import dataclasses

    from restransfer.bench.results import write_results
    from restransfer.bench.transfer import (
        SMOKE,
        TransferSettings,
        markdown_summary,
        recipe_texts,
        run_transfer,
        summarize,
    )
    from restransfer.recipe.load import parse_overrides

    if args.smoke:
        settings = dataclasses.replace(SMOKE, keras_baseline=args.keras_baseline)
    else:
        settings = TransferSettings(
            seeds=tuple(args.seeds), freezes=tuple(args.freeze), inits=tuple(args.init),
            source_overrides=dict(parse_overrides(args.source_overrides)),
            target_overrides=dict(parse_overrides(args.target_overrides)),
            cache_compare=not args.no_cache_compare, cache_image_sizes=tuple(args.cache_image_sizes),
            probe=not args.no_probe, keras_baseline=args.keras_baseline)
    recorded = {"settings": {**dataclasses.asdict(settings), "workdir": args.workdir, "recipes": recipe_texts()}}

    def write(records) -> None:
        if args.out:
            write_results(args.out, records, settings={**recorded["settings"], "summary": summarize(records)},
                          notes=_TRANSFER_NOTES)

    records = run_transfer(settings, args.workdir, on_record=write)
    print(markdown_summary(summarize(records)))
    if args.out:
        print(f"wrote {args.out}")
    return 0


_TRANSFER_NOTES = (
    "Each finetune record is one restransfer.train run of the shipped quickstart recipes. val_accuracy is the "
    "final evaluation (after precise BN where BatchNorm trains), val_accuracy_before_precise_bn the last "
    "epoch's validation pass with the statistics training left. steady_epoch_seconds is the median epoch "
    "after the first (which traces the step functions), validation included; the uncached head-only run "
    "follows its cached twin directly, so both see the same load; timing records (timing: true) are those "
    "twins and the head-only pairs at other image sizes, not rows of the accuracy table. The probe is a "
    "logistic regression on the source run's pooled last-stage features of the same training images, "
    "scored on the same validation images. Records of kind keras (--keras-baseline) are the same task written "
    "as a plain Keras script (restransfer.bench.keras_baseline), each with its own source run."
)


def _imbalance(args) -> int:
    import dataclasses

    from restransfer.bench.imbalance import SMOKE, ImbalanceSettings, markdown_summary, run_imbalance, summarize
    from restransfer.bench.results import write_results
    from restransfer.recipe.load import parse_overrides

    settings = SMOKE if args.smoke else ImbalanceSettings(
        seeds=tuple(args.seeds), weightings=tuple(args.weightings),
        target_overrides=dict(parse_overrides(args.target_overrides)))
    recorded = dataclasses.asdict(settings)

    def write(records) -> None:
        if args.out:
            write_results(args.out, records, settings={**recorded, "workdir": args.workdir,
                                                       "summary": summarize(records)}, notes=_IMBALANCE_NOTES)

    records = run_imbalance(settings, args.workdir, on_record=write)
    print(markdown_summary(summarize(records)))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _multilabel(args) -> int:
    import dataclasses

    from restransfer.bench.multilabel import SMOKE, MultiLabelSettings, markdown_summary, run_multilabel, summarize
    from restransfer.bench.results import write_results
    from restransfer.recipe.load import parse_overrides

    settings = SMOKE if args.smoke else MultiLabelSettings(
        seeds=tuple(args.seeds), recipe_overrides=dict(parse_overrides(args.recipe_overrides)))
    recorded = dataclasses.asdict(settings)

    def write(records) -> None:
        if args.out:
            write_results(args.out, records, settings={**recorded, "workdir": args.workdir,
                                                       "summary": summarize(records)}, notes=_MULTILABEL_NOTES)

    records = run_multilabel(settings, args.workdir, on_record=write)
    print(markdown_summary(summarize(records)))
    if args.out:
        print(f"wrote {args.out}")
    return 0


_MULTILABEL_NOTES = (
    "Each seed draws its own digit grids (600 training, 200 validation, 200 test; digits 0-5, a cell blank with "
    "chance 0.3) from disjoint shares of scikit-learn's digits. restransfer: recipes/multilabel_digits.yaml "
    "(cifar_resnet20 from scratch, 15 epochs), its thresholds chosen on the validation grids when training ended, "
    "scored on the test grids by `evaluate --split test`. logreg_*: scikit-learn's OneVsRestClassifier("
    "LogisticRegression(C=1)) on standardised features (grey pixels, or the pooled last stage of the quickstart's "
    "source run, trained once on 42 letters, fed the grids at 16 px), thresholds chosen on the same validation "
    "grids. summary.paired pairs the seeds."
)


_IMBALANCE_NOTES = (
    "Each record is one restransfer.train run of recipes/quickstart_target.yaml's settings on the seed's digit "
    "folders (data.source folder), from one source run of recipes/quickstart_source.yaml (seed 0), scored on "
    "the seed's balanced test folder by the kept model (checkpoint.keep: best, picked on the validation folder), "
    "without and with TTA (mean over the image and its horizontal flip). test_smallest_class_recall is the recall "
    "of the class with the fewest training images (digit 9, 3 images). summary.auto_minus_none pairs the runs "
    "of each seed; summary.minus_none does so for every setting, with on how many seeds it scored higher / lower. "
    "logreg_none and logreg_balanced are scikit-learn's LogisticRegression (standardised pixels of the same PNG "
    "files; class_weight None / balanced) fitted on the seed's training folder and scored on its test folder."
)
