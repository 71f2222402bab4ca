"""The LLM bridge: a pretrained language model that reads visual tokens (captioning, free-form VQA)."""

from vlfuse.task import TaskInfo, register_task

register_task(TaskInfo(
    name="bridge",
    summary="a language model reading visual tokens: captions and free-form answers",
    config="vlfuse.bridge.config:BridgeConfig",
    run="vlfuse.bridge.run:BridgeRun",
    training="vlfuse.bridge.task:BridgeTask",
    operations=("evaluate", "ask", "caption", "explain", "serve"),
    required_files=("bridge.safetensors",),
    serve_as="bridge",
    shipped={"easy-vqa-bridge": "shipped/easy_vqa_bridge", "photo-bridge": "shipped/photo_bridge"},
))  # fmt: skip
