import pytest
import yaml

from vlfuse.config import apply_overrides
from vlfuse.errors import ConfigError
from vlfuse.task import load_config, validate_config


def test_unknown_top_level_key_lists_valid_keys(tiny_config):
    tiny_config["trian"] = {}
    with pytest.raises(ConfigError, match=r"unknown key 'trian'; valid keys here: task, seed, data, model, train"):
        validate_config(tiny_config)


def test_unknown_nested_key_names_dotted_path(tiny_config):
    tiny_config["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"unknown key 'train.learning_rate'.*lr"):
        validate_config(tiny_config)


def test_unknown_component_field_names_component(tiny_config):
    tiny_config["model"]["fusion"]["width"] = 3
    with pytest.raises(ConfigError, match=r"model\.fusion\.width.*valid keys here: name, dim"):
        validate_config(tiny_config)


def test_unknown_component_name_suggests_close_match(tiny_config):
    tiny_config["model"]["fusion"] = {"name": "prodcut"}
    with pytest.raises(ConfigError, match=r"unknown fusion 'prodcut'.*Did you mean 'product'"):
        validate_config(tiny_config)


def test_wrong_type_names_key_and_value(tiny_config):
    tiny_config["train"]["epochs"] = "many"
    with pytest.raises(ConfigError, match=r"'train.epochs'.*integer.*'many'"):
        validate_config(tiny_config)


def test_overrides_keep_yaml_types(tmp_path, tiny_config):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    cfg = load_config(
        path, ["train.epochs=7", "train.grad_clip=null", "model.fusion.dim=12", "data.augment.hflip=false"]
    )
    assert cfg.train.epochs == 7 and cfg.train.grad_clip is None
    assert cfg.model.fusion.dim == 12 and cfg.data.augment.hflip is False


def test_override_without_equals_is_rejected(tiny_config):
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(tiny_config, ["train.epochs"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does-not-exist.yaml' does not exist"):
        load_config(tmp_path / "does-not-exist.yaml")


def test_component_fields_survive_round_trip(tiny_config):
    cfg = validate_config(tiny_config)
    again = validate_config(cfg.model_dump(mode="json"))
    assert again.model.image_encoder.channels == [8, 16]
    assert again == cfg


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path(__file__).parents[1].glob("configs/*.yaml")))
def test_every_shipped_config_builds(path):
    from vlfuse.model import build_model

    cfg = load_config(path)
    if cfg.task == "bridge":  # built (LM and all) as the shipped bridge, which must equal it: tests/bridge
        assert cfg.stages and cfg.model.image_encoder.frozen
        return
    if cfg.task in ("retrieval", "photo"):
        from vlfuse.data.text import TextTokenizer
        from vlfuse.retrieval.model import build_dual_encoder

        pretrained = TextTokenizer.of_encoder(cfg.model.text_encoder, max_length=cfg.data.max_text_length)
        model = build_dual_encoder(
            cfg.model, in_channels=cfg.data.channels, image_size=cfg.data.image_size,
            vocab_size=pretrained.vocab_size if pretrained else 50, pad_id=pretrained.pad_id if pretrained else 0,
            max_length=cfg.data.max_text_length,
        )  # fmt: skip
        assert sum(p.numel() for p in model.parameters()) > 0
        return
    model = build_model(
        cfg.model, in_channels=cfg.data.channels, image_size=cfg.data.image_size, vocab_size=50, pad_id=0,
        max_length=cfg.data.max_text_length, num_outputs=13,
    )  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) > 0
