import pytest

from instrument_seg.config import complete_config, inference_size, load_config, parse_override
from instrument_seg.errors import InputError


class TestConfig:
    def test_defaults_hold_every_section(self):
        config = load_config()
        assert config["cues"]["enabled"] == ["color", "objectness", "location"]
        assert config["threshold"]["method"] == "otsu"

    def test_file_then_overrides_last(self, tmp_path):
        exp = tmp_path / "exp.yaml"
        exp.write_text("seed: 3\ncues:\n  enabled: [color]\n")
        config = load_config([exp], ["seed=7", "data.size=[64, 80]"])
        assert config["seed"] == 7
        assert config["cues"]["enabled"] == ["color"]
        assert config["data"]["size"] == [64, 80]
        assert config["cues"]["objectness"]["method"] == "alexe"  # untouched default

    def test_unknown_key_in_override(self):
        with pytest.raises(InputError, match="unknown config key 'cues.colour'"):
            load_config(overrides=["cues.colour=1"])

    def test_unknown_key_in_file_names_the_file(self, tmp_path):
        exp = tmp_path / "exp.yaml"
        exp.write_text("data:\n  sise: [1, 2]\n")
        with pytest.raises(InputError, match=r"unknown config key 'data.sise' in .*exp\.yaml"):
            load_config([exp])

    def test_missing_file(self, tmp_path):
        with pytest.raises(InputError, match="does not exist"):
            load_config([tmp_path / "none.yaml"])

    def test_section_replaced_by_scalar(self):
        with pytest.raises(InputError, match="'cues' .* must be a mapping"):
            load_config(overrides=["cues=3"])

    def test_override_syntax(self):
        assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
        with pytest.raises(InputError, match="key=value"):
            parse_override("seed")

    def test_old_stored_config_is_completed_with_todays_defaults(self):
        old = load_config(overrides=["seed=5", "threshold.method=official"])
        del old["cues"]["objectness"]  # a section an older version did not have
        old["removed_long_ago"] = {"x": 1}
        config = complete_config(old)
        assert config["seed"] == 5 and config["threshold"]["method"] == "official"
        assert config["cues"]["objectness"] == load_config()["cues"]["objectness"]
        assert "removed_long_ago" not in config
        assert complete_config(None) is None


class TestInferenceSize:
    def test_default_runs_at_twice_the_training_size(self):
        config = load_config()
        assert inference_size(config) == tuple(2 * v for v in config["data"]["size"])

    def test_scale_one_is_the_training_size(self):
        config = load_config([], ["model.inference_scale=1", "data.size=[64,96]"])
        assert inference_size(config) == (64, 96)

    @pytest.mark.parametrize("bad", ["0", "1.5", "true", "5"])
    def test_bad_scale(self, bad):
        config = load_config([], [f"model.inference_scale={bad}"])
        with pytest.raises(InputError, match="model.inference_scale"):
            inference_size(config)
