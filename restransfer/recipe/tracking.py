"""Experiment tracking in MLflow (recipe key ``tracking: {mlflow: {uri, experiment}}``, the ``mlflow`` extra).

``uri`` is an MLflow tracking URI: ``sqlite:///mlflow.db`` (a local database; artifacts in
``mlartifacts/`` beside it unless ``artifacts`` says where), a server's URL, or unset for MLflow's
default (``MLFLOW_TRACKING_URI``). MLflow 3 refuses its former ``file:`` store unless
``MLFLOW_ALLOW_FILE_STORE=true``.

A run logs, through MLflow's client: the resolved recipe as parameters (key paths such as
``phases.0.optimizer.learning_rate``) and as ``recipe.yaml``, every epoch's metrics (step = the
epoch), the final metrics (``final.*``, ``calibration.*``), and at the end ``model.keras``,
``metrics.json``, ``history.csv``, ``report.html`` and the plots as artifacts. The MLflow run id is
kept in ``run.json``, so a resumed run goes on logging into the same MLflow run. TensorBoard logs
are written as before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from restransfer.errors import ConfigError

# MLflow refuses longer parameter values.
_MAX_PARAM = 6000


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}``; empty containers stay as their text."""
    if isinstance(tree, Mapping) and tree:
        out = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, (list, tuple)) and tree:
        out = {}
        for index, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}{index}."))
        return out
    return {prefix.rstrip("."): tree}


def numeric(tree: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of a flattened mapping, keys prefixed."""
    return {f"{prefix}{k}": float(v) for k, v in flatten(tree).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class MlflowTracker:
    """One restransfer run as one MLflow run (created, or resumed from the id in ``run.json``)."""

    def __init__(self, config, plan, folder, say=print):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("tracking.mlflow needs MLflow: pip install 'restransfer[mlflow]' (or remove "
                              "tracking.mlflow from the recipe).") from None
        self.folder, self.say = folder, say
        try:
            self.client = MlflowClient(tracking_uri=config.uri)
            experiment = self.client.get_experiment_by_name(config.experiment)
            experiment_id = (experiment.experiment_id if experiment is not None else self.client.create_experiment(
                config.experiment, artifact_location=artifact_location(config)))
        except Exception as error:  # MLflow raises its own exceptions, OSErrors and HTTP errors
            raise ConfigError(f"tracking.mlflow: the tracking store {config.uri or '(MLflow default)'} cannot be "
                              f"used: {str(error).splitlines()[0] if str(error) else type(error).__name__}. Check "
                              "tracking.mlflow.uri (e.g. file:./mlruns or sqlite:///mlflow.db).") from None
        run = self._existing((folder.info() or {}).get("mlflow_run_id"))
        if run is None:
            run = self.client.create_run(experiment_id, run_name=folder.path.name, tags={
                "restransfer.run_dir": str(folder.path), "restransfer.model": plan.model.name})
            self.run_id = run.info.run_id
            folder.write_info(mlflow_run_id=self.run_id)
            self._log_params(plan)
        else:
            self.run_id = run.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        say(f"MLflow: run {self.run_id} in experiment '{config.experiment}' ({self.client.tracking_uri}).")

    def _existing(self, run_id: str | None):
        if not run_id:
            return None
        try:
            return self.client.get_run(run_id)
        except Exception:  # deleted, or another store: a new MLflow run
            return None

    def _log_params(self, plan) -> None:
        from mlflow.entities import Param

        from restransfer.recipe.load import recipe_dict

        params = [Param(key, str(value)[:_MAX_PARAM]) for key, value in flatten(recipe_dict(plan.recipe)).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        self.client.log_text(self.run_id, plan.text, "recipe.yaml")

    def log_metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, float(value), stamp, step or 0) for key, value in values.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def callback(self):
        """A Keras callback logging each epoch's metrics (step = the run's epoch number)."""
        import keras

        tracker = self

        class _Epochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                values = {k: float(v) for k, v in (logs or {}).items()
                          if isinstance(v, (int, float)) or hasattr(v, "__float__")}
                tracker.log_metrics({k: v for k, v in values.items() if math.isfinite(v)}, step=epoch + 1)

        return _Epochs()

    def finish(self, metrics: Mapping[str, Any]) -> None:
        """Final metrics, then the run folder's files as artifacts; the MLflow run ends FINISHED."""
        self.log_metrics({**numeric(metrics.get("final", {}), "final."),
                          **numeric(metrics.get("calibration") or {}, "calibration.")})
        path = self.folder.path
        for name in ("model.keras", "metrics.json", "history.csv", "report.html", "recipe.yaml", "class_names.json"):
            if (path / name).is_file():
                self.client.log_artifact(self.run_id, str(path / name))
        if (path / "plots").is_dir():
            self.client.log_artifacts(self.run_id, str(path / "plots"), "plots")
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        """End the MLflow run as FAILED (a resumed run sets it running again)."""
        try:
            self.client.set_terminated(self.run_id, "FAILED")
        except Exception:  # the failure being reported matters more than the store's
            pass


def artifact_location(config) -> str | None:
    """Where a new experiment keeps artifacts: ``artifacts`` when set; beside the database for an
    ``sqlite:///`` store (``mlartifacts/``, not MLflow's ``./mlruns`` of whatever folder a run starts in)."""
    if config.artifacts:
        return Path(config.artifacts).expanduser().resolve().as_uri()
    if config.uri and config.uri.startswith("sqlite:///"):
        database = Path(config.uri.removeprefix("sqlite:///"))
        if not database.is_absolute():  # sqlite:///x.db is relative; sqlite:////x.db absolute
            database = Path.cwd() / database
        return (database.parent / "mlartifacts").resolve().as_uri()
    return None


def open_tracker(plan, folder, say=print) -> MlflowTracker | None:
    """The run's tracker when the recipe asks for one (``tracking.mlflow``), else None."""
    config = plan.recipe.tracking.mlflow
    return None if config is None else MlflowTracker(config, plan, folder, say)


__all__ = ["MlflowTracker", "flatten", "numeric", "open_tracker"]
