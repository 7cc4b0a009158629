import inspect
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from restransfer.data.schema import DataConfig
from restransfer.validation import config_error


def data_config_error(error):
    return str(config_error(error, DataConfig, "data", prefix=("data",)))


def test_defaults_dump_to_load_data_keywords():
    from restransfer.data.pipeline import load_data

    dumped = DataConfig().model_dump()
    assert dumped["source"] == "digits" and dumped["image_size"] == [32, 32]
    assert DataConfig.model_validate(dumped) == DataConfig()
    # load_data takes every key of every source (as **kwargs) plus seed and run_dir.
    params = inspect.signature(load_data).parameters
    assert {"seed", "run_dir"} <= set(params) and params["kwargs"].kind == inspect.Parameter.VAR_KEYWORD


def test_schema_imports_without_tensorflow():
    # A recipe must validate where TensorFlow is absent (the JAX-only environment).
    code = ("import sys; sys.modules['tensorflow'] = None; "
            "from restransfer.data import DataConfig; "
            "DataConfig.model_validate({'source': 'digits', 'classes': [5, 6]})")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate({"source": "digits", "per_clas": 10})
    message = data_config_error(info.value)
    assert "data.per_clas" in message and "Did you mean 'per_class'" in message


def test_unknown_source_suggests_the_nearest():
    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate({"source": "foldr", "path": "x"})
    assert "data.source: 'foldr' is not allowed" in data_config_error(info.value)
    assert "Did you mean 'folder'" in data_config_error(info.value)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(ValidationError) as info:
        DataConfig.model_validate({"source": "folder", "path": "flowers/train",
                                   "validation_split": 0.2}, context={"base_dir": tmp_path})
    message = data_config_error(info.value)
    assert "data.path" in message and str(tmp_path / "flowers/train") in message


def test_relative_paths_resolve_against_base_dir(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    cfg = DataConfig.model_validate({"source": "folder", "path": "train", "val_path": "val"},
                                    context={"base_dir": tmp_path})
    assert cfg.path == tmp_path / "train" and cfg.val_path == tmp_path / "val"


@pytest.mark.parametrize("size", [0, [224], [224, 224, 3], "big", [32.5, 32], True, 5000])
def test_bad_image_size(size):
    with pytest.raises(ValidationError, match="image_size"):
        DataConfig.model_validate({"source": "digits", "image_size": size})


def test_image_size_int_means_square():
    assert DataConfig.model_validate({"image_size": 64}).image_size == [64, 64]


def test_folder_needs_exactly_one_validation_source(tmp_path):
    with pytest.raises(ValidationError, match="no validation data"):
        DataConfig.model_validate({"source": "folder", "path": str(tmp_path)})
    with pytest.raises(ValidationError, match="not both"):
        DataConfig.model_validate({"source": "folder", "path": str(tmp_path),
                                   "val_path": str(tmp_path), "validation_split": 0.2})


def test_augment_shorthands():
    aug = DataConfig.model_validate({"augment": {"flip": True, "random_resized_crop": True,
                                                 "color_jitter": 0.3, "mixup": 0.2}}).augment
    assert aug.flip == "horizontal" and aug.random_resized_crop.scale == (0.08, 1.0)
    assert aug.color_jitter.brightness == 0.3 and aug.color_jitter.hue == 0
    assert aug.enabled and not DataConfig().augment.enabled
    with pytest.raises(ValidationError, match="flip"):
        DataConfig.model_validate({"augment": {"flip": "diagonal"}})
    with pytest.raises(ValidationError, match="rotaton"):
        DataConfig.model_validate({"augment": {"rotaton": 10}})


def test_digits_classes_validated():
    with pytest.raises(ValidationError, match="distinct digits"):
        DataConfig.model_validate({"classes": [5, 5, 6]})
    with pytest.raises(ValidationError, match="distinct digits"):
        DataConfig.model_validate({"classes": [3, 12]})
