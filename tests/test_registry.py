"""Component registries list their package's modules without importing them, and import one when it is used."""

import subprocess
import sys

import pytest

from vlfuse.errors import ConfigError
from vlfuse.registry import FUSIONS, ComponentConfig, Registry


def test_names_come_without_imports_and_a_lookup_imports_the_module():
    code = (
        "import sys\n"
        "from vlfuse.registry import IMAGE_ENCODERS, FUSIONS\n"
        "assert {'cnn', 'seed_cnn', 'vit', 'efficientnet_lite0', 'imagenet_conse'} <= set(IMAGE_ENCODERS.names())\n"
        "assert 'vlfuse.encoders.image.vit' not in sys.modules and 'torch' not in sys.modules\n"
        "FUSIONS.parse({'name': 'gated'}, 'model.fusion')\n"
        "assert 'vlfuse.fusion.gated' in sys.modules and 'vlfuse.fusion.concat' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_private_modules_are_not_components():
    from vlfuse.registry import TEXT_ENCODERS

    assert "_bert" not in TEXT_ENCODERS.names() and "minilm" in TEXT_ENCODERS.names()


def test_a_builtin_module_must_register_its_own_name():
    registry = Registry("fusion", "vlfuse.fusion")

    class Misnamed:
        __module__ = "vlfuse.fusion.concat"

    with pytest.raises(ValueError, match="lives in vlfuse.fusion.other"):
        registry.register("other", ComponentConfig)(Misnamed)


def test_components_from_elsewhere_register_under_any_name():
    registry = Registry("fusion", "vlfuse.fusion")

    class Mine:
        __module__ = "my_plugin.fusions"

    registry.register("mine", ComponentConfig)(Mine)
    assert "mine" in registry.names() and registry.component_class("mine") is Mine


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'concat'"):
        FUSIONS.parse({"name": "concatt"}, "model.fusion")
