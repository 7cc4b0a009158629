#!/usr/bin/env bash
# The full test suite, from a fresh clone: the README's test command and what CI runs.
#  1. everything under the TensorFlow backend, in .venv (the project with its dev, jax, litert, keras-cv, sweep,
#     mlflow, docs, onnx and demo extras; the docs site is built with --strict before the tests);
#  2. the model code under KERAS_BACKEND=jax in .venv-jax, which holds keras + jax and no
#     TensorFlow at all: the GPU path must not need it;
#  3. ruff and lint-imports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# The HTML report's and the demo page's browser tests run headless Chromium. CI (CI=true) and root
# shells install Debian's package when it is missing; elsewhere those tests skip.
if ! command -v chromium >/dev/null && { [ "${CI:-}" = true ] || [ "$(id -u)" = 0 ]; }; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# timm (dev extra) needs torch and torchvision; the tests use them on the CPU only, as reference
# implementations. They are pinned as a pair because a torchvision wheel imports only beside the
# torch release it was built for, and an unpinned install may pick them from different indexes.
# This is the pair the suite was last run with. On Linux, pip's default torch is a CUDA build of
# several GB; to fetch the small CPU-only wheels instead, set for example
#   TORCH_PACKAGES="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu"
# shellcheck disable=SC2086  # TORCH_PACKAGES is a list of pip arguments
.venv/bin/python -m pip install -q ${TORCH_PACKAGES:-torch==2.14.1 torchvision==0.29.1}
.venv/bin/python -m pip install -q -e ".[dev,jax,litert,keras-cv,sweep,mlflow,docs,onnx,demo]"
# The documentation site: generated references and the Benchmarks page must build without a warning.
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
# Two workers: much of the suite is single-threaded Python (model building, notebook kernels). worksteal:
# an idle worker takes queued tests from the busy one, so a few long tests do not leave it idle at the end.
.venv/bin/python -m pytest -n 2 --dist worksteal --durations=25 "$@"

[ -x .venv-jax/bin/python ] || "$PY" -m venv .venv-jax
.venv-jax/bin/python -m pip install -q --upgrade pip
# restransfer without its dependencies (TensorFlow is one), then pyproject.toml's jax-env group.
.venv-jax/bin/python -m pip install -q --no-deps -e .
.venv-jax/bin/python -m pip install -q --group jax-env
KERAS_BACKEND=jax .venv-jax/bin/python -m pytest -m "not tensorflow" --durations=10 tests/models tests/test_backend.py tests/training/test_precise_bn.py

# Style (ruff) and DESIGN.md's floors (import-linter contracts in pyproject.toml). Last, so that a
# finding here does not hide the tests' results; the script still fails on it.
.venv/bin/ruff check .
.venv/bin/lint-imports
