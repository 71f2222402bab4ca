"""Video understanding: a clip (+ a question or other text) → labels — video classification and video QA — through
a per-frame image tower, a temporal module (`vlfuse.encoders.temporal`) and the fusion zoo; trains through the
classifier. See docs/design.md "Video"."""

from vlfuse.task import TaskInfo, register_task

register_task(TaskInfo(
    name="video",
    summary="video (+ text) → labels: video classification and video QA with temporal modules over frames",
    config="vlfuse.video.config:VideoConfig",
    run="vlfuse.video.run:VideoRun",
    training="vlfuse.video.task:VideoTask",
    operations=("evaluate", "predict", "serve"),
    required_files=("labels.json", "model.safetensors"),
    serve_as="predict",
))  # fmt: skip
