"""The export formats and TFLite quantisations: imported by the recipe schema and the CLI, so light."""

FORMATS = ("saved_model", "keras", "tflite", "onnx")
QUANTIZATIONS = ("float16", "dynamic", "int8")
