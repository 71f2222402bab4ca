"""Classification (incl. VQA as answer classification): image + text → one of K labels, binary or multilabel,
through the fusion zoo (`vlfuse.fusion`)."""

from vlfuse.task import TaskInfo, register_task

WEIGHTS = "model.safetensors"  # a run's weights (named here, light to import: the ONNX prediction path checks them)

register_task(TaskInfo(
    name="classify",
    summary="image + text → labels (multiclass, binary, multilabel; VQA as answer classification)",
    config="vlfuse.classify.config:ClassifyConfig",
    run="vlfuse.classify.run:ClassifyRun",
    training="vlfuse.classify.task:ClassifyTask",
    operations=("evaluate", "robustness", "explain", "predict", "export", "serve"),
    required_files=("labels.json", WEIGHTS),
    serve_as="predict",
))  # fmt: skip
