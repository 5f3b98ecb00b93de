"""config.example.yaml stays true: it loads, and it documents every configuration key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from obs_sync.config import Config, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_keys(annotation, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISALES_ACCESS_KEY", "ak")
    monkeypatch.setenv("ISALES_SECRET_KEY", "sk")
    monkeypatch.delenv("OBS_SYNC_DATABASE_URL", raising=False)
    config = load_config(EXAMPLE)
    assert config.isales.vdn_list[:3] == [1, 2, 100]
    assert config.database.url.get_secret_value() == ""


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\s*#?\s*([a-z_]+):", text, flags=re.MULTILINE))
    missing = [key for key in _keys(Config) if key.rsplit(".", 1)[-1] not in documented]
    assert not missing, f"config.example.yaml does not mention: {missing}"
