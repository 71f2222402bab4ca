"""Export a trained run for deployment (ONNX) and run the export with onnxruntime."""

from vlfuse.export.onnx import ExportError, OnnxExportWrapper, export_onnx

__all__ = ["ExportError", "OnnxExportWrapper", "export_onnx"]
