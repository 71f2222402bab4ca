"""The classic image+text model in Keras (TensorFlow backend), timed on the same arrays as vlfuse's benchmark.

Run by `benchmarks/classic_speed.py` inside the peer environment (`benchmarks/peer/requirements.txt`):

    python benchmarks/peer/keras_classic.py --data ARRAYS.npz --vocab V --epochs 3 [--mask]

Prints one JSON line: the samples/s of each epoch after the first (the first includes graph tracing).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, help="npz with images (N, H, W, C) float32, tokens (N, T), labels")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocab", type=int, required=True)
    parser.add_argument("--mask", action="store_true", help="Embedding(mask_zero=True): the LSTM skips padding (id 0)")
    args = parser.parse_args()

    import keras
    import numpy as np
    from keras import layers

    arrays = np.load(args.data)
    images, tokens, labels = arrays["images"], arrays["tokens"], arrays["labels"]
    classes = int(labels.max()) + 1
    image_in = keras.Input(shape=images.shape[1:])
    x = layers.Conv2D(32, 3, activation="relu")(image_in)  # the seed example, layer for layer
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    text_in = keras.Input(shape=tokens.shape[1:])
    t = layers.Embedding(args.vocab, 32, mask_zero=args.mask)(text_in)
    t = layers.LSTM(64)(t)
    out = layers.Dense(classes, activation="softmax")(layers.concatenate([x, t]))
    model = keras.Model([image_in, text_in], out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")

    rates = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.fit([images, tokens], labels, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=True)
        rates.append(len(labels) / (time.perf_counter() - start))
    print(
        json.dumps(
            {
                "samples_per_s": rates[1:],
                "masked": args.mask,
                "first_epoch": rates[0],
                "keras": keras.__version__,
                "backend": keras.backend.backend(),
            }
        )
    )


if __name__ == "__main__":
    main()
