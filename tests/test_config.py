import pytest

from da.config import ConfigError, load_config
from tests.conftest import moons_configs


def test_defaults_and_overrides_apply():
    cfg = load_config(moons_configs(dann=True), ["optim.lr=0.2", "train.steps=17", "algorithm.lambda_max=3"])
    assert cfg.optim.lr == 0.2 and cfg.train.steps == 17
    assert cfg.algorithm.name == "dann" and cfg.algorithm.lambda_max == 3.0
    assert cfg.model.hidden == [15]  # from the YAML file


def test_later_files_win(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("optim: {lr: 0.1}\ntrain: {steps: 5}\n")
    b.write_text("optim: {lr: 0.3}\n")
    cfg = load_config([a, b])
    assert cfg.optim.lr == 0.3 and cfg.train.steps == 5


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(moons_configs(dann=False), ["optim.learning_rate=0.1"])
    msg = str(err.value)
    assert "optim.learning_rate" in msg and "lr" in msg and "momentum" in msg


@pytest.mark.parametrize("config", ["experiments/configs/digits.yaml", "experiments/configs/rebar2d.yaml"])
def test_one_spelling_of_color_jitter_the_other_refused_by_name(config):
    from tests.conftest import REPO

    assert load_config(REPO / config, ["data.color_jitter=0.5"]).data.color_jitter == 0.5
    with pytest.raises(ConfigError, match="'data.colour_jitter' is spelled 'data.color_jitter'"):
        load_config(REPO / config, ["data.colour_jitter=0.5"])


def test_a_run_saved_with_the_old_spelling_still_loads(tmp_path):
    from da.config import load_run_config, to_yaml
    from tests.conftest import REPO

    cfg = load_config(REPO / "experiments/configs/digits.yaml", ["data.color_jitter=0.25"])
    old = tmp_path / "config.yaml"
    old.write_text(to_yaml(cfg).replace("color_jitter:", "colour_jitter:"))  # as the code of its day wrote it
    assert "colour_jitter" in old.read_text()
    assert load_run_config(old) == cfg
    with pytest.raises(ConfigError, match="is spelled"):
        load_config([old])


def test_unknown_top_level_key_in_file_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian: {steps: 3}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*trian.*valid keys.*train"):
        load_config([bad])


def test_model_specific_keys_validate_against_the_chosen_model():
    cfg = load_config(None, ["model.name=lenet", "model.channels=[8,16]", "data.name=digits"])
    assert cfg.model.channels == [8, 16]
    with pytest.raises(ConfigError, match="model.channels.*MLPConfig"):
        load_config(None, ["model.name=mlp", "model.channels=[8,16]"])
    with pytest.raises(ConfigError, match="registered: .*lenet.*mlp"):
        load_config(None, ["model.name=resnet9000"])


def test_algorithm_keys_validate_against_the_chosen_algorithm():
    with pytest.raises(ConfigError, match="algorithm.lambda_max.*SourceOnlyConfig"):
        load_config(None, ["algorithm.name=source_only", "algorithm.lambda_max=2"])


def test_type_errors_name_the_key():
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config(None, ["optim.lr=fast"])


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "missing.yaml"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config([broken])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"])


def test_a_bad_value_names_where_it_came_from(tmp_path):
    """From the command line: the override is named; from a file: the file."""
    base = "experiments/configs/transfer.yaml"
    with pytest.raises(ConfigError, match=r"^command line \(model.strategy=feature_extractor\) over "
                                          r"experiments/configs/transfer.yaml: model: strategy feature_extractor"):
        load_config([base], ["data.name=image_folder", "data.path=x", "model.strategy=feature_extractor"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  strategy: feature_extractor\n")
    with pytest.raises(ConfigError, match=rf"^{base} \+ {bad}: model: strategy feature_extractor"):
        load_config([base, bad], ["data.name=image_folder", "data.path=x"])


def test_source_order_is_shuffled_or_fixed():
    assert load_config(None, []).train.source_order == "shuffled"
    assert load_config(None, ["train.source_order=fixed"]).train.source_order == "fixed"
    with pytest.raises(ConfigError, match="train.source_order must be shuffled or fixed, got 'sorted'"):
        load_config(None, ["train.source_order=sorted"])
