"""Training tier: data, the model zoo, distillation, the run configuration and model files.

Needs torch (imported inside the functions that use it, so ``import edgekd`` stays light). May use
the device tier (an ONNX teacher runs in onnxruntime) and core; never the export or application
tiers (``lint-imports`` enforces it: pyproject.toml, [tool.importlinter]).
"""
