"""Imports every task package so that the task registry is complete once `vlfuse` is imported.

Components (encoders, fusions, heads) need no line here: each registry lists its package's modules and imports one
when its name is first used (`vlfuse.registry`). Adding a task: its package registers itself in its `__init__.py`
(see docs/design.md, "How to add a task"), which imports nothing heavy; add its import line here.
"""

import vlfuse.bridge  # noqa: F401
import vlfuse.classify  # noqa: F401
import vlfuse.moderate  # noqa: F401
import vlfuse.photo  # noqa: F401
import vlfuse.retrieval  # noqa: F401
import vlfuse.video  # noqa: F401
