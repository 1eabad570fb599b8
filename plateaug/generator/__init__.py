"""The generator at run time and on disk: backends (ONNX Runtime, torch, callables), checkpoints,
ONNX export, and where the shipped default lives."""
