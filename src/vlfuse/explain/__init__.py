"""Explanations of a classification (VQA, moderation) run's predictions, each with a measured check.

- `target`: one example made ready to explain — its batch, raw pixels, tokens and the output explained.
- `modality`: the exact two-player Shapley value of image vs text, and an MM-SHAP-style share over patches and tokens.
- `emap`: the EMAP gap — the model against its best additive projection over a split (does it really fuse?).
- `attribution`: pixel and word attributions through Captum (Grad-CAM, Integrated Gradients, occlusion) and the
  attention maps of attention-based fusions.
- `checks`: the measurements that say whether a map means anything (deletion, pointing game, randomization).
- `example` writes one example's explanation (PNG overlays, coloured words, JSON, an HTML page); `split` reports
  modality shares over a split.

Inference only: nothing here imports the training code.
"""
