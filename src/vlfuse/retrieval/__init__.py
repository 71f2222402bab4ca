"""Language ↔ vision retrieval: a contrastive dual encoder, an embedding index with search, zero-shot labels.

    vlfuse train configs/retrieval_easy_vqa.yaml --run-dir runs/ret     # task: retrieval
    vlfuse index runs/ret easy-vqa:test --out shapes.index
    vlfuse search runs/ret shapes.index "a blue triangle" -k 5
    vlfuse zeroshot runs/ret --on easy-vqa:test

Python: `vlfuse.load_run(path)` → `vlfuse.retrieval.run.RetrievalRun`; `EmbeddingIndex`, `label_embeddings`,
`contrastive_loss`.
"""

from vlfuse.task import TaskInfo, register_task

register_task(TaskInfo(
    name="retrieval",
    summary="a contrastive dual encoder: text ↔ image search, zero-shot labels",
    config="vlfuse.retrieval.config:RetrievalConfig",
    run="vlfuse.retrieval.run:RetrievalRun",
    training="vlfuse.retrieval.task:RetrievalTask",
    operations=("evaluate", "index", "search", "zeroshot", "serve"),
    required_files=("tokenizer.json", "model.safetensors"),
    serve_as="retrieval_run",
))  # fmt: skip
