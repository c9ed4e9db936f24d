"""Settings: environment variables over an optional TOML file, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from madrone.config import Settings
from madrone.errors import InputError


def test_defaults_file_and_variables(tmp_path: Path) -> None:
    assert Settings.from_env({}) == Settings()
    config = tmp_path / "madrone.toml"
    config.write_text('workers = 3\npng_max_size = 1024\noutput_dir = "here"\n')
    settings = Settings.from_env({"MADRONE_CONFIG": str(config), "MADRONE_WORKERS": "5"})
    assert (settings.workers, settings.png_max_size, settings.output_dir) == (5, 1024, "here")


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"MADRONE_WORKERS": "many"}, "MADRONE_WORKERS='many' is not a whole number"),
        ({"MADRONE_CONFIG": "/no/such.toml"}, "MADRONE_CONFIG=/no/such.toml: cannot read"),
    ],
)
def test_bad_values_name_the_variable(environ: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        Settings.from_env(environ)


def test_bad_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "madrone.toml"
    config.write_text("wokers = 3\n")
    with pytest.raises(InputError, match="unknown setting 'wokers'"):
        Settings.from_env({"MADRONE_CONFIG": str(config)})
    config.write_text("workers = 'x'\n")
    with pytest.raises(InputError, match="workers='x' is not a whole number"):
        Settings.from_env({"MADRONE_CONFIG": str(config)})


def test_workers_resolve_to_cores() -> None:
    assert Settings(workers=0).resolved_workers() >= 1
    assert Settings(workers=0).resolved_workers(3) == 3
    with pytest.raises(InputError, match="-1"):
        Settings().resolved_workers(-1)


def test_area_limit_and_stac_headers() -> None:
    settings = Settings.from_env(
        {"MADRONE_MAX_AREA_KM2": "2500.5", "MADRONE_STAC_HEADERS": "X-Api-Key: a:b; Accept: json"}
    )
    assert settings.max_area_km2 == 2500.5
    assert settings.stac_header_map() == {"X-Api-Key": "a:b", "Accept": "json"}
    assert Settings().stac_header_map() == {}
    with pytest.raises(InputError, match="MADRONE_MAX_AREA_KM2='big' is not a number"):
        Settings.from_env({"MADRONE_MAX_AREA_KM2": "big"})
    with pytest.raises(InputError, match="'token-without-name' is not 'Name: value'"):
        Settings(stac_headers="token-without-name").stac_header_map()
