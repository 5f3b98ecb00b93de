"""config.example.yaml stays true: it loads, and it documents every configuration key."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from obs_sync.config import Config, ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def _model(annotation: object) -> object:
    """``X | None`` and ``tuple[X, ...]`` of a section model X: X (sources: [...])."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        annotation = _model(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_keys(annotation, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISALES_ACCESS_KEY", "ak")
    monkeypatch.setenv("ISALES_SECRET_KEY", "sk")
    monkeypatch.setenv("OBS_SYNC_DATABASE_URL", "embedded")
    config = load_config(EXAMPLE)
    assert config.isales.vdn_list[:3] == [1, 2, 100]
    assert config.database.embedded


def test_example_without_a_database_url_names_both_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ISALES_ACCESS_KEY", "ak")
    monkeypatch.setenv("ISALES_SECRET_KEY", "sk")
    monkeypatch.delenv("OBS_SYNC_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError) as error:
        load_config(EXAMPLE)
    message = str(error.value)
    assert "database.url" in message and "OBS_SYNC_DATABASE_URL" in message
    assert "postgresql+psycopg://" in message and "`embedded`" in message


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\s*#?\s*([a-z_]+):", text, flags=re.MULTILINE))
    missing = [key for key in _keys(Config) if key.rsplit(".", 1)[-1] not in documented]
    assert not missing, f"config.example.yaml does not mention: {missing}"


def _numeric_fields(model: type[BaseModel], prefix: str = "") -> dict[str, list[object]]:
    fields: dict[str, list[object]] = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = _model(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields.update(_numeric_fields(annotation, f"{key}."))
        elif str(annotation).replace("None", "").strip(" |") in (
            "int",
            "float",
            "<class 'int'>",
            "<class 'float'>",
        ):
            fields[key] = field.metadata
    return fields


def test_every_numeric_key_has_both_bounds_and_the_example_states_them() -> None:
    import annotated_types

    text = EXAMPLE.read_text(encoding="utf-8")
    fields = _numeric_fields(Config)
    assert "isales.timeout_seconds" in fields and "metrics.port" in fields
    for key, metadata in fields.items():
        lower = [m for m in metadata if isinstance(m, (annotated_types.Ge, annotated_types.Gt))]
        upper = [m for m in metadata if isinstance(m, (annotated_types.Le, annotated_types.Lt))]
        assert lower and upper, f"{key} has no lower or upper bound"
        bound = upper[0]
        limit = getattr(bound, "le", None) or getattr(bound, "lt", None)
        lines = text.splitlines()
        name = key.rsplit(".", 1)[-1]
        at = next(i for i, line in enumerate(lines) if re.match(rf"^\s*#?\s*{name}:", line))
        line = lines[at]
        for following in lines[at + 1 :]:  # the comment may continue on the next lines
            if not re.match(r"^\s{30,}#", following):
                break
            line += following
        assert f"..{limit:g}".replace("e+0", "e") in line.replace("_", ""), (key, limit, line)
