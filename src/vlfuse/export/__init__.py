"""Export a trained run for deployment (ONNX: `onnx.py`, needs torch) and run the export with onnxruntime
(`runtime.py`, without torch). Nothing is imported here, so the runtime side stays free of torch."""
