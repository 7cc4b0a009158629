"""`restransfer cv | sweep`: k-fold cross-validation of a recipe, and sweeps that choose on folds."""

from __future__ import annotations

_SET_HELP = "override a recipe key, e.g. --set phases[0].epochs=3 (repeatable; value parsed as YAML)"


def register(subparsers) -> None:
    cv = subparsers.add_parser(
        "cv", help="k-fold cross-validation: one run per fold, cv.json, oof.csv and a report",
        description="Pool the recipe's training and validation images, split them into stratified folds "
                    "(scikit-learn), train one ordinary run per fold into OUT/fold-i, then write OUT/cv.json "
                    "(every final metric per fold, mean +- sd), OUT/oof.csv (out-of-fold probabilities) and "
                    "OUT/report.html. A test split stays out of every fold. Rerunning a killed cv trains only "
                    "the unfinished folds.")
    cv.add_argument("recipe", help="recipe YAML file")
    cv.add_argument("--folds", type=int, default=5, help="k (default 5)")
    cv.add_argument("--repeats", type=int, default=1, help="repeat the k-fold split with other shuffles")
    cv.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    cv.add_argument("--out", default=None, help="cv folder (default: runs/<recipe name>-cv)")
    cv.add_argument("--force", action="store_true", help="train every fold again")
    cv.set_defaults(handler=_cv)

    sweep = subparsers.add_parser(
        "sweep", help="hyperparameter search with Optuna (TPE, per-epoch pruning, resumable)",
        description="Search recipe keys over the ranges of SPACE.yaml (e.g. 'phases[0].optimizer.learning_rate: "
                    "{log_uniform: [1e-4, 1e-2]}', 'phases[0].freeze: {choice: [[conv1], all_but_head]}'); the "
                    "objective is the monitored metric (val_accuracy), the mean over --folds folds when given. "
                    "Every trial is an ordinary run folder (a cv folder with --folds); OUT/sweep.db keeps the "
                    "study, so rerunning a killed sweep resumes it. Needs the `sweep` extra (optuna).")
    sweep.add_argument("recipe", help="recipe YAML file")
    sweep.add_argument("--space", required=True, help="YAML file: recipe key path -> {log_uniform|uniform|int: "
                                                     "[low, high]} or {choice: [...]}")
    sweep.add_argument("--trials", type=int, required=True, help="trials in all (a resumed sweep counts earlier ones)")
    sweep.add_argument("--folds", type=int, default=None, help="score each trial by k-fold cross-validation")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    sweep.add_argument("--out", default=None, help="sweep folder (default: runs/<recipe name>-sweep)")
    sweep.add_argument("--seed", type=int, default=None, help="TPE sampler seed (default: the recipe's seed)")
    sweep.add_argument("--no-prune", action="store_true", help="run every trial to its last epoch")
    sweep.set_defaults(handler=_sweep)


def _cv(args) -> int:
    from restransfer.recipe.cross_validation import cross_validate

    cross_validate(args.recipe, args.overrides, folds=args.folds, repeats=args.repeats, out=args.out,
                   force=args.force, verbose="auto")
    return 0


def _sweep(args) -> int:
    from restransfer.recipe.sweep import sweep

    sweep(args.recipe, args.overrides, space=args.space, trials=args.trials, folds=args.folds, out=args.out,
          seed=args.seed, prune=not args.no_prune, verbose="auto")
    return 0
