from pathlib import Path

import pytest

from services.common.config.loader import ConfigError
from services.dispatcher.config import load_dispatch_config


def test_the_shipped_config_loads() -> None:
    config = load_dispatch_config()
    assert config.routing == "district"
    assert config.topics.violations.partitions >= 2


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("dispatch: {routing: street}", "dispatch.routing: Input should be 'city' or 'district'"),
        ("dispatch: {colour: red}", "dispatch.colour: Extra inputs are not permitted"),
        (
            "dispatch: {grouping: {window_s: 900}, dedup_horizon_s: 60}",
            "dispatch: dedup_horizon_s must be at least grouping.window_s",
        ),
        (
            "dispatch: {priorities: {peak_hours: [{start: '09:00', end: '07:00'}]}}",
            "dispatch.priorities.peak_hours[0]: start must be before end",
        ),
        ("dispatch: {batch: {max_events: 0}}", "dispatch.batch.max_events: Input should be"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "dispatch.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as excinfo:
        load_dispatch_config(path)
    assert f"{path}: {message}" in str(excinfo.value)
