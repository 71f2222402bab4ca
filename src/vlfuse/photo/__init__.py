"""Real photos without training: ImageNet labels → ConSE embeddings (zero-shot labels, search) and a language model
that writes captions and answers from the labels (Socratic Models).

    vlfuse zeroshot photo x.jpg --labels "cat,car,coffee"
    vlfuse index photo FOLDER --out photos.index && vlfuse search photo photos.index "a red car"
    vlfuse caption photo x.jpg
    vlfuse ask photo x.jpg "what animal is this?"

`vlfuse train configs/photo.yaml --run-dir runs/photo` writes the same run (nothing is trained) and scores it on
Tux Paint's test split; the shipped "photo" is that run.
"""

from vlfuse.task import TaskInfo, register_task

register_task(TaskInfo(
    name="photo",
    summary="zero training on real photos: ImageNet labels → ConSE search and labels, Socratic captions",
    config="vlfuse.photo.config:PhotoConfig",
    run="vlfuse.photo.run:PhotoRun",
    training="vlfuse.photo.task:PhotoTask",
    operations=("evaluate", "index", "search", "zeroshot", "ask", "caption"),
    required_files=("tokenizer.json", "model.safetensors"),
    serve_as="bridge",
    shipped={"photo": "shipped/photo"},
))  # fmt: skip
