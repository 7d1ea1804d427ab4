"""ONNX graph rewrites: the same computation in a form a runtime runs faster.

Each rewrite is pure math on a generator's weights (``subpixel``, ``rowconv``) plus the nodes that
compute it; :mod:`.rewrite` applies them to a whole model for ONNX Runtime on the CPU
(:func:`imgxlate.engine.make_runner` calls it, for whole images and for the exact tiler's segment
graphs alike), and the exact tiler builds its upsampling segments from ``subpixel`` directly.
A rewrite changes float32 rounding only (sums in another order, ~1e-6 relative), not the result.
"""
