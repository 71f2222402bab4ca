"""Imports every component module and task package so that the registries are complete once `vlfuse` is imported.

Adding a component: create its file, then add its import line here. Adding a task: its package registers itself
in its `__init__.py` (see docs/design.md, "How to add a task"); add its import line here.
"""

import vlfuse.bridge  # noqa: F401
import vlfuse.classify  # noqa: F401
import vlfuse.encoders.image.cnn  # noqa: F401
import vlfuse.encoders.image.efficientnet_lite0  # noqa: F401
import vlfuse.encoders.image.imagenet_conse  # noqa: F401
import vlfuse.encoders.image.seed_cnn  # noqa: F401
import vlfuse.encoders.image.vit  # noqa: F401
import vlfuse.encoders.text.bow  # noqa: F401
import vlfuse.encoders.text.gru  # noqa: F401
import vlfuse.encoders.text.minilm  # noqa: F401
import vlfuse.encoders.text.seed_lstm  # noqa: F401
import vlfuse.encoders.text.transformer  # noqa: F401
import vlfuse.fusion.attention  # noqa: F401
import vlfuse.fusion.bilinear  # noqa: F401
import vlfuse.fusion.concat  # noqa: F401
import vlfuse.fusion.cross_attention  # noqa: F401
import vlfuse.fusion.film  # noqa: F401
import vlfuse.fusion.gated  # noqa: F401
import vlfuse.fusion.image_only  # noqa: F401
import vlfuse.fusion.late  # noqa: F401
import vlfuse.fusion.product  # noqa: F401
import vlfuse.fusion.sum  # noqa: F401
import vlfuse.fusion.tensor  # noqa: F401
import vlfuse.fusion.text_only  # noqa: F401
import vlfuse.heads.linear  # noqa: F401
import vlfuse.heads.mlp  # noqa: F401
import vlfuse.moderate  # noqa: F401
import vlfuse.photo  # noqa: F401
import vlfuse.retrieval  # noqa: F401
