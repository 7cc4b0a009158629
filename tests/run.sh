#!/usr/bin/env bash
# The full test suite, from a fresh clone: the README's test command and what CI runs.
#  1. everything under the TensorFlow backend, in .venv (the project with its dev, jax, litert, keras-cv, sweep,
#     mlflow and docs extras; the docs site is built with --strict before the tests);
#  2. the model code under KERAS_BACKEND=jax in .venv-jax, which holds keras + jax and no
#     TensorFlow at all: the GPU path must not need it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# The HTML report's browser test renders the page in headless Chromium. CI (CI=true) and root
# shells install Debian's package when it is missing; elsewhere that one test skips.
if ! command -v chromium >/dev/null && { [ "${CI:-}" = true ] || [ "$(id -u)" = 0 ]; }; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# timm's torch and torchvision (dev extra): this pair installs from the machine's wheel store in
# ~75 s; another torch would download a multi-GB CUDA build, and PyPI's torchvision does not
# import beside the local CPU-only torch 2.13 wheel.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[dev,jax,litert,keras-cv,sweep,mlflow,docs]"
# The documentation site: generated references and the Benchmarks page must build without a warning.
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
# Two workers: much of the suite is single-threaded Python (model building, notebook kernels).
.venv/bin/python -m pytest -n 2 --durations=25 "$@"

[ -x .venv-jax/bin/python ] || "$PY" -m venv .venv-jax
.venv-jax/bin/python -m pip install -q --upgrade pip
.venv-jax/bin/python -m pip install -q "keras>=3.8" "jax[cpu]" numpy h5py safetensors pyyaml pydantic rich pytest pytest-timeout
.venv-jax/bin/python -m pip install -q --no-deps -e .
KERAS_BACKEND=jax .venv-jax/bin/python -m pytest -m "not tensorflow" --durations=10 tests/models tests/test_backend.py tests/training/test_precise_bn.py
