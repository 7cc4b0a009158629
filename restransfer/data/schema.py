"""`DataConfig`: the recipe's `data:` section, strict and typed (no TensorFlow here).

One model per `source`, selected by the `source` key (a discriminated union). Relative paths are
resolved against ``context["base_dir"]`` (the recipe loader passes the current directory, like
every path given on the command line) and must exist::

    DataConfig.model_validate(
        {"source": "folder", "path": "flowers/train", "image_size": 224},
        context={"base_dir": Path.cwd()},
    )

``DataConfig(...).model_dump()`` is exactly the keyword arguments of
:func:`restransfer.data.load_data` (plus ``seed`` and ``run_dir``, which live elsewhere in a
recipe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    StrictInt,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from restransfer.training.class_weights import CLASS_WEIGHT_MODES

SOURCES = ("folder", "csv", "tfds", "digits", "glyphs", "arrays")
CACHE_MODES = ("auto", "memory", "file", "none")
FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
# keras-cv layers that Keras core has no counterpart for (benchmarks/keras_cv_augment.py
# measured them on both backends); applied by restransfer.data.augment, the `keras-cv` extra.
KerasCvLayer = Literal["GridMask", "JitteredResize", "FourierMix", "ChannelShuffle", "RandomChannelShift",
                       "RandomJpegQuality"]
KERAS_CV_LAYERS: tuple[str, ...] = get_args(KerasCvLayer)

# How decoded images are resized to image_size; see restransfer.data.image_ops.
ResizeMethod = Literal["area", "bilinear"]
RESIZE_METHODS: tuple[str, ...] = get_args(ResizeMethod)
# Also what runs and exports that record no ``resize`` used (they predate the option).
DEFAULT_RESIZE: ResizeMethod = "area"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class RandomResizedCrop(_Strict):
    """Inception-style crop: a random area ``scale`` and aspect ``ratio``, resized back."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high or (info.field_name == "scale" and high > 1):
            raise ValueError(f"{info.field_name} must be 0 < low <= high"
                             f"{' <= 1' if info.field_name == 'scale' else ''}; received {value}")
        return value


class ColorJitter(_Strict):
    """Random brightness, contrast, saturation (fractions, e.g. 0.4) and hue (0..0.5)."""

    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, le=1)
    saturation: float = Field(0.0, ge=0, le=1)
    hue: float = Field(0.0, ge=0, le=0.5)


class RandAugmentConfig(_Strict):
    """RandAugment: ``num_ops`` random operations per image at ``magnitude`` (0..1)."""

    num_ops: int = Field(2, ge=1, le=10)
    magnitude: float = Field(0.5, gt=0, le=1)


class AugmentConfig(_Strict):
    """Training-time augmentation; validation data is never augmented.

    Every field is off by default. ``true`` turns a nested option on with its defaults, and a
    number for ``color_jitter`` sets brightness, contrast and saturation to that value.
    """

    flip: Literal[FLIP_MODES] | None = None
    random_resized_crop: RandomResizedCrop | None = None
    rotation: float = Field(0.0, ge=0, le=180, description="max rotation in degrees")
    zoom: float = Field(0.0, ge=0, lt=1, description="max zoom in/out as a fraction")
    color_jitter: ColorJitter | None = None
    rand_augment: RandAugmentConfig | None = None
    mixup: float = Field(0.0, ge=0, description="MixUp Beta(alpha, alpha); 0 = off")
    cutmix: float = Field(0.0, ge=0, description="CutMix Beta(alpha, alpha); 0 = off")
    keras_cv: dict[KerasCvLayer, dict[str, Any]] = Field(
        default_factory=dict, description="keras-cv layers by name with their arguments (the keras-cv extra)")

    @field_validator("flip", mode="before")
    @classmethod
    def _flip_shorthand(cls, value: Any) -> Any:
        if value is True:
            return "horizontal"
        if value is False or value == "none":
            return None
        return value

    @field_validator("random_resized_crop", "rand_augment", mode="before")
    @classmethod
    def _bool_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("keras_cv", mode="before")
    @classmethod
    def _keras_cv_shorthand(cls, value: Any) -> Any:
        # `keras_cv: [GridMask]` or `{GridMask: true}` turn layers on with their defaults.
        if isinstance(value, (list, tuple)):
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {k: ({} if v is True or v is None else v) for k, v in value.items() if v is not False}
        return value

    @field_validator("color_jitter", mode="before")
    @classmethod
    def _jitter_shorthand(cls, value: Any) -> Any:
        if value is False or value == 0:
            return None
        if value is True:
            value = 0.4
        if isinstance(value, (int, float)):
            return {"brightness": value, "contrast": value, "saturation": value}
        return value

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


class FoldConfig(_Strict):
    """One fold of a stratified k-fold split of the training and validation images pooled
    (`restransfer.data.folds`); ``restransfer cv`` writes it into each fold's recipe."""

    folds: StrictInt = Field(ge=2, le=100)
    index: StrictInt = Field(ge=1, description="1-based, repeat after repeat: 1..folds*repeats")
    repeats: StrictInt = Field(1, ge=1, le=100)
    seed: StrictInt = Field(0, ge=0, lt=2**32)

    @model_validator(mode="after")
    def _index_in_range(self) -> FoldConfig:
        if self.index > self.folds * self.repeats:
            raise ValueError(f"index {self.index} is past the last fold ({self.folds} folds x {self.repeats} "
                             f"repeats = {self.folds * self.repeats})")
        return self


def _resolve_path(value: Path | None, info: ValidationInfo, *, must_exist: bool = True,
                  kind: Literal["folder", "file"] | None = None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        base = (info.context or {}).get("base_dir")
        path = Path(base) / path if base is not None else path
    # A finished run's recipe is read back without the check: its data may have moved since.
    if must_exist and (info.context or {}).get("check_paths", True) and not path.exists():
        where = (info.context or {}).get("base_dir")
        hint = f" (relative paths are resolved against {where})" if where is not None else ""
        raise ValueError(f"{info.field_name} '{value}' does not exist: looked for {path}{hint}")
    if must_exist and (info.context or {}).get("check_paths", True) and kind is not None:
        # /dev/zero exists too: a folder source walks class folders, a CSV source reads a table.
        if kind == "folder" and not path.is_dir():
            raise ValueError(f"{info.field_name} '{value}' is not a folder; source: folder reads one "
                             f"subfolder per class (for a table of path,label rows use source: csv)")
        if kind == "file" and not path.is_file():
            raise ValueError(f"{info.field_name} '{value}' is not a regular file; source: csv reads a "
                             f"table of path,label rows (for class subfolders use source: folder)")
    return path


class _Common(_Strict):
    image_size: list[int] = Field(default_factory=lambda: [224, 224],
                                  description="[height, width] or one int for square images")
    batch_size: StrictInt = Field(32, ge=1, le=65536)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    cache: Literal[CACHE_MODES] = "auto"
    resize: ResizeMethod = Field(
        DEFAULT_RESIZE,
        description="area: antialiased shrinking, close to PIL (torchvision, timm); bilinear: "
                    "Keras' image_dataset_from_directory default, faster, aliased when shrinking")
    shuffle_buffer: int | None = Field(None, ge=1, description="training images shuffled together: each epoch "
                                       "permutes every block of this many; default: the whole training set")
    skip_bad: bool = False
    fold: FoldConfig | None = None
    class_weight: Literal[CLASS_WEIGHT_MODES] | dict[str, Annotated[float, Field(gt=0, le=1e6)]] = Field(
        "auto", description="auto (a logit-adjusted loss when the largest training class has >= 3x the images "
                            "of the smallest), balanced (weights n / (k * n_class)), logit_adjusted (log class "
                            "prior added to the logits in the loss), logit_adjusted_posthoc (plain loss; log class "
                            "prior taken off the kept model's logits), none, or {label: weight}; see "
                            "restransfer.training.class_weights")

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight(cls, value: Any) -> Any:
        if value is None or value is False:
            return "none"
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"image_size must be an int or [height, width]; received {value!r}")
        if isinstance(value, int):
            value = [value, value]
        if isinstance(value, tuple):
            value = list(value)
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise ValueError(f"image_size must be an int or [height, width]; received {value!r}")
        if min(value) < 8 or max(value) > 4096:
            raise ValueError(f"image_size sides must be between 8 and 4096 pixels; received {value}")
        return value


class _FileData(_Common):
    """Sources read from files: training data at ``path``, validation from ``val_path`` or a split."""

    path: Path
    val_path: Path | None = None
    test_path: Path | None = None
    validation_split: float | None = Field(None, gt=0, lt=1)

    @field_validator("path", "val_path", "test_path")
    @classmethod
    def _paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_path(value, info)

    @model_validator(mode="after")
    def _one_validation(self) -> _FileData:
        _check_one_validation(self)
        return self


class FolderData(_FileData):
    """One subfolder per class; validation from ``val_path`` or a stratified split."""

    source: Literal["folder"] = "folder"

    @field_validator("path", "val_path", "test_path")
    @classmethod
    def _paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_path(value, info, kind="folder")


class CsvData(_FileData):
    """A CSV of ``path,label`` rows; image paths are relative to the CSV file."""

    source: Literal["csv"] = "csv"

    @field_validator("path", "val_path", "test_path")
    @classmethod
    def _paths(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _resolve_path(value, info, kind="file")


class TfdsData(_Common):
    """A TensorFlow Datasets dataset; splits use TFDS syntax such as ``train[:80%]``."""

    source: Literal["tfds"] = "tfds"
    name: str
    data_dir: Path | None = None
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str | None = None
    image_key: str = "image"
    label_key: str = "label"

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # TFDS creates data_dir on download, so it need not exist yet.
        return _resolve_path(value, info, must_exist=False)


class DigitsData(_Common):
    """scikit-learn's bundled 8x8 digits, upscaled to ``image_size``; no download needed."""

    source: Literal["digits"] = "digits"
    classes: list[int] | None = Field(None, description="digits to keep, labelled 0..k-1 in this order")
    per_class: int | None = Field(None, ge=1, description="training images per class; default: all")
    val_per_class: int | None = Field(None, ge=1,
                                      description="validation images per class from the rest")
    image_size: list[int] = Field(default_factory=lambda: [32, 32])

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value or len(set(value)) != len(value) or not all(0 <= c <= 9 for c in value):
            raise ValueError(f"classes must be distinct digits 0..9; received {value}")
        if len(value) < 2:
            raise ValueError(f"classes needs at least two digits to classify; received {value}")
        return value


class GlyphsData(_Common):
    """Letters rendered from matplotlib's fonts as 8x8 images like the digits (a many-class
    source task, offline; `restransfer.data.glyphs`), upscaled to ``image_size``."""

    source: Literal["glyphs"] = "glyphs"
    classes: str | None = Field(None, description="the characters to keep, labelled 0..k-1 in this order; "
                                                  "default: all 42 (glyphs.CHARACTERS)")
    per_class: int = Field(60, ge=1, description="training images per class")
    val_per_class: int = Field(20, ge=1, description="validation images per class")
    image_size: list[int] = Field(default_factory=lambda: [32, 32])

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: str | None) -> str | None:
        from restransfer.data.glyphs import CHARACTERS

        if value is None:
            return None
        unknown = sorted(set(value) - set(CHARACTERS))
        if unknown or len(set(value)) != len(value) or len(value) < 2:
            raise ValueError(f"classes must be at least two distinct characters of {CHARACTERS!r}; "
                             f"received {value!r}" + (f" ({', '.join(map(repr, unknown))} not among them)"
                                                      if unknown else ""))
        return value


class ArraysData(_Common):
    """In-memory NumPy images (NHWC or NHW, uint8 or float 0..255) and integer labels."""

    source: Literal["arrays"] = "arrays"
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    class_names: list[str] | None = None
    x_test: Any = None
    y_test: Any = None


def _check_one_validation(config: FolderData | CsvData) -> None:
    if config.val_path is not None and config.validation_split is not None:
        raise ValueError("give either val_path or validation_split, not both "
                         f"(received val_path={config.val_path}, "
                         f"validation_split={config.validation_split})")
    if config.val_path is None and config.validation_split is None:
        raise ValueError("no validation data: set val_path to a folder of the same classes, "
                         "or validation_split (e.g. 0.2) for a stratified split of path")


def _source_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("source", "digits")
    return getattr(value, "source", None)


_Sources = Annotated[
    Union[  # noqa: UP007 (one member per line reads better than a chain of |)
        Annotated[FolderData, Tag("folder")],
        Annotated[CsvData, Tag("csv")],
        Annotated[TfdsData, Tag("tfds")],
        Annotated[DigitsData, Tag("digits")],
        Annotated[GlyphsData, Tag("glyphs")],
        Annotated[ArraysData, Tag("arrays")],
    ],
    Discriminator(_source_of),
]


class DataConfig(RootModel[_Sources]):
    """The `data:` section of a recipe; attributes read through to the chosen source's model.

    Example:
        >>> cfg = DataConfig.model_validate({"source": "digits", "classes": [5, 6], "per_class": 10})
        >>> cfg.image_size
        [32, 32]
        >>> sorted(cfg.model_dump())[:3]
        ['augment', 'batch_size', 'cache']
    """

    root: _Sources = Field(default_factory=DigitsData)
    model_config = ConfigDict(frozen=True)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            return super().__getattr__(name)
        return getattr(self.root, name)


# The model of each source: the error formatter follows a source's tag through it.
DataConfig.members = {"folder": FolderData, "csv": CsvData, "tfds": TfdsData, "digits": DigitsData,
                      "glyphs": GlyphsData, "arrays": ArraysData}
