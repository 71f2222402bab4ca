"""Content moderation: image + text → calibrated per-label risk scores, policy thresholds chosen on validation and
measured on test, a review band, resumable batch scans (`vlfuse moderate`) and POST /v1/moderate. Trains through the
classifier (fusion zoo, multilabel heads); see docs/design.md "Moderation"."""

from vlfuse.task import TaskInfo, register_task

register_task(TaskInfo(
    name="moderate",
    summary="image + text → calibrated label scores, policy decisions (allow / review / block), batch scans",
    config="vlfuse.moderate.config:ModerateConfig",
    run="vlfuse.moderate.run:ModerateRun",
    training="vlfuse.moderate.task:ModerateTask",
    operations=("evaluate", "explain", "predict", "moderate", "serve"),
    required_files=("labels.json", "model.safetensors", "moderation.json"),
    serve_as="predict",
))  # fmt: skip
