"""Bundled models: one folder per pair, each holding a2b.onnx, b2a.onnx and a model card."""
