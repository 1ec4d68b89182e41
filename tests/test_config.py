"""Loading settings: defaults < TOML file < SENSORIUM_* environment < explicit overrides, and
one-line errors naming the file or the setting when something is wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sensorium import Settings, UserError, load_settings
from sensorium.graphs.fusion import builtin_fit


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    """An empty per-user config folder (`XDG_CONFIG_HOME`)."""
    home = tmp_path / "config-home"
    home.mkdir()
    return home


@pytest.fixture
def clean_env(config_home: Path) -> dict[str, str]:
    """An environment with no settings, whose config folder holds no file."""
    return {"XDG_CONFIG_HOME": str(config_home)}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "sensorium.toml",
        """
device = "cuda"
tools = ["colours", "classify"]

[fusion]
abstain_below = 0.4
weights = { classify = 2.0, caption = 0.5 }

[llm]
backend = "none"
max_tokens = 64
""",
    )


def refused(
    match: str,
    path: Path | None = None,
    *,
    env: dict[str, str],
    overrides: dict[str, object] | None = None,
) -> str:
    """Load settings, expect a `UserError` matching `match`; return its one-line message."""
    with pytest.raises(UserError, match=match) as caught:
        load_settings(path, env=env, overrides=overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults(clean_env: dict[str, str], tmp_path: Path) -> None:
    settings = load_settings(env=clean_env)
    assert settings == Settings()
    assert settings.profile == "lite"
    assert settings.device == "auto"
    assert settings.tools is None
    assert settings.llm.backend == "none"  # the packaged SmolLM2 is opt-in (configuration.md)
    assert settings.planner.max_tools == 3
    assert settings.fusion.weights == builtin_fit("lite").weights  # type: ignore[union-attr]
    chosen = builtin_fit("lite").abstain_below  # type: ignore[union-attr]
    assert settings.fusion.abstain_below == (0.25 if chosen is None else chosen)
    assert settings.data_dir == tmp_path / "data"  # SENSORIUM_DATA_DIR, set by conftest


def test_toml_file_sets_nested_values(config_file: Path, clean_env: dict[str, str]) -> None:
    settings = load_settings(config_file, env=clean_env)
    assert settings.device == "cuda"
    assert settings.tools == ["colours", "classify"]
    assert settings.fusion.abstain_below == 0.4
    assert settings.fusion.weights.items() >= {"classify": 2.0, "caption": 0.5}.items()
    assert settings.fusion.weight("caption") == 0.5
    assert settings.fusion.weight("colours") == 1.0
    assert settings.llm.backend == "none"
    assert settings.llm.max_tokens == 64
    assert settings.llm.temperature == 0.0  # unset keys in a section keep their defaults
    assert settings.planner.max_tools == 3


def test_path_may_be_a_string(config_file: Path, clean_env: dict[str, str]) -> None:
    assert load_settings(str(config_file), env=clean_env).device == "cuda"


def test_config_file_in_the_user_config_folder_is_read(
    config_home: Path, clean_env: dict[str, str]
) -> None:
    write(config_home / "sensorium" / "config.toml", '[llm]\nbackend = "none"\n')
    assert load_settings(env=clean_env).llm.backend == "none"


def test_environment_overrides_the_file(config_file: Path, clean_env: dict[str, str]) -> None:
    env = clean_env | {
        "SENSORIUM_DEVICE": "cpu",
        "SENSORIUM_FUSION__ABSTAIN_BELOW": "0.5",
        "SENSORIUM_TOOLS": '["colours"]',
        "SENSORIUM_LLM__TEMPERATURE": "0.7",
        "SENSORIUM_PLANNER__POLICY": "router",
    }
    settings = load_settings(config_file, env=env)
    assert settings.device == "cpu"
    assert settings.fusion.abstain_below == 0.5
    assert settings.tools == ["colours"]
    assert settings.llm.temperature == 0.7
    assert settings.planner.policy == "router"
    # Keys the environment does not name keep the file's values.
    assert settings.fusion.weights.items() >= {"classify": 2.0, "caption": 0.5}.items()
    assert settings.llm.backend == "none"


def test_environment_can_set_one_expert_weight(clean_env: dict[str, str]) -> None:
    env = clean_env | {"SENSORIUM_FUSION__WEIGHTS__CLASSIFY": "2.5"}
    assert load_settings(env=env).fusion.weight("classify") == 2.5


def test_environment_sets_the_data_dir(clean_env: dict[str, str], tmp_path: Path) -> None:
    env = clean_env | {"SENSORIUM_DATA_DIR": str(tmp_path / "elsewhere")}
    settings = load_settings(env=env)
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.images_dir == tmp_path / "elsewhere" / "images"


def test_overrides_win_over_environment_and_file(
    config_file: Path, clean_env: dict[str, str]
) -> None:
    env = clean_env | {"SENSORIUM_DEVICE": "cpu", "SENSORIUM_FUSION__ABSTAIN_BELOW": "0.5"}
    settings = load_settings(
        config_file,
        env=env,
        overrides={"device": "mps", "fusion": {"abstain_below": 0.1}},
    )
    assert settings.device == "mps"
    assert settings.fusion.abstain_below == 0.1
    assert (
        settings.fusion.weights.items() >= {"classify": 2.0, "caption": 0.5}.items()
    )  # merged, not replaced


def test_sensorium_config_names_the_file(config_file: Path, clean_env: dict[str, str]) -> None:
    settings = load_settings(env=clean_env | {"SENSORIUM_CONFIG": str(config_file)})
    assert settings.device == "cuda"
    assert settings.fusion.abstain_below == 0.4


def test_explicit_path_wins_over_sensorium_config(
    config_file: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    other = write(tmp_path / "other.toml", 'device = "mps"\n')
    env = clean_env | {"SENSORIUM_CONFIG": str(config_file)}
    assert load_settings(other, env=env).device == "mps"


def test_environment_variables_are_read_from_os_environ_by_default(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENSORIUM_CONFIG", str(config_file))
    monkeypatch.setenv("SENSORIUM_DEVICE", "cpu")
    settings = load_settings()
    assert settings.device == "cpu"
    assert settings.llm.backend == "none"


# Errors: one line, naming the file or the setting.


def test_missing_explicit_file_is_refused(tmp_path: Path, clean_env: dict[str, str]) -> None:
    missing = tmp_path / "missing.toml"
    refused(rf"^config file not found: {re.escape(str(missing))}$", missing, env=clean_env)


def test_directory_as_config_file_is_refused(tmp_path: Path, clean_env: dict[str, str]) -> None:
    refused(rf"^config file not found: {re.escape(str(tmp_path))}$", tmp_path, env=clean_env)


def test_sensorium_config_naming_a_missing_file_is_refused(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    missing = tmp_path / "typo.toml"
    refused(
        rf"^config file not found: {re.escape(str(missing))}$",
        env=clean_env | {"SENSORIUM_CONFIG": str(missing)},
    )


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path, clean_env: dict[str, str]) -> None:
    broken = write(tmp_path / "broken.toml", '[fusion]\nabstain_below = "0.4\n')
    refused(
        rf"^config file {re.escape(str(broken))} is not valid TOML: .+ \(at line 2, column \d+\)$",
        broken,
        env=clean_env,
    )


def test_invalid_toml_in_the_user_config_folder_is_refused(
    config_home: Path, clean_env: dict[str, str]
) -> None:
    broken = write(config_home / "sensorium" / "config.toml", "device = \n")
    refused(rf"^config file {re.escape(str(broken))} is not valid TOML: ", env=clean_env)


def test_invalid_device_in_a_file_is_refused_naming_setting_and_file(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    bad = write(tmp_path / "bad.toml", 'device = "tpu"\n')
    refused(
        r"^invalid setting device: Input should be 'auto', 'cpu', 'cuda' or 'mps' "
        rf"\(from {re.escape(str(bad))} or SENSORIUM_\* variables\)$",
        bad,
        env=clean_env,
    )


def test_invalid_backend_from_the_environment_is_refused(clean_env: dict[str, str]) -> None:
    refused(
        r"^invalid setting llm\.backend: Input should be "
        r"'smollm2', 'openai', 'ollama', 'transformers' or 'none' "
        r"\(from defaults or SENSORIUM_\* variables\)$",
        env=clean_env | {"SENSORIUM_LLM__BACKEND": "gpt"},
    )


def test_invalid_backend_in_a_file_is_refused(tmp_path: Path, clean_env: dict[str, str]) -> None:
    bad = write(tmp_path / "bad.toml", '[llm]\nbackend = "gpt"\n')
    refused(
        r"^invalid setting llm\.backend: Input should be "
        r"'smollm2', 'openai', 'ollama', 'transformers' or 'none' ",
        bad,
        env=clean_env,
    )


def test_out_of_range_value_is_refused(clean_env: dict[str, str]) -> None:
    refused(
        r"^invalid setting fusion\.abstain_below: Input should be less than or equal to 1 ",
        env=clean_env | {"SENSORIUM_FUSION__ABSTAIN_BELOW": "2"},
    )


def test_batching_settings_load_and_an_impossible_batch_is_refused(
    tmp_path: Path, clean_env: dict[str, str]
) -> None:
    good = write(tmp_path / "batching.toml", "[batching]\nmax_batch = 32\nmax_wait_ms = 0\n")
    loaded = load_settings(good, env=clean_env).batching
    assert (loaded.max_batch, loaded.max_wait_ms) == (32, 0)
    bad = write(tmp_path / "bad.toml", "[batching]\nmax_batch = 0\n")
    refused(
        r"^invalid setting batching\.max_batch: Input should be greater than or equal to 1 ",
        bad,
        env=clean_env,
    )


def test_wrong_type_is_refused(clean_env: dict[str, str]) -> None:
    refused(
        r"^invalid setting tools: Input should be a valid list ",
        env=clean_env | {"SENSORIUM_TOOLS": "colours"},
    )


@pytest.mark.parametrize(
    ("toml", "setting"),
    [
        ('colour = "red"\n', "colour"),
        ("[llm]\nbakend = 'none'\n", r"llm\.bakend"),
        ("[planner]\nmax_tool = 2\n", r"planner\.max_tool"),
        ("[fusion]\nabstain_bellow = 0.4\n", r"fusion\.abstain_bellow"),
    ],
)
def test_unknown_setting_is_refused(
    tmp_path: Path, clean_env: dict[str, str], toml: str, setting: str
) -> None:
    bad = write(tmp_path / "typo.toml", toml)
    refused(rf"^invalid setting {setting}: Extra inputs are not permitted ", bad, env=clean_env)


def test_unknown_environment_setting_is_refused(clean_env: dict[str, str]) -> None:
    refused(
        r"^invalid setting devise: Extra inputs are not permitted ",
        env=clean_env | {"SENSORIUM_DEVISE": "cpu"},
    )


def test_invalid_override_is_refused(clean_env: dict[str, str]) -> None:
    refused(
        r"^invalid setting device: Input should be",
        env=clean_env,
        overrides={"device": "tpu"},
    )


def test_environment_outside_the_prefix_is_ignored(clean_env: dict[str, str]) -> None:
    env = clean_env | {"DEVICE": "tpu", "SENSORIUMDEVICE": "tpu", "OTHER_TOOLS": "[]"}
    assert load_settings(env=env) == Settings()
