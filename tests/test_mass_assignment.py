"""Every write schema forbids unknown fields, so nothing privileged can be slipped in."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.main import iter_routes


def _body_models(route: APIRoute) -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = []

    def walk(dependant: Any) -> None:
        for param in dependant.body_params:
            annotation = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                models.append(annotation)
        for sub in dependant.dependencies:
            walk(sub)

    walk(route.dependant)
    return models


def test_every_json_body_forbids_unknown_fields():
    checked = []
    lax = []
    for path, route in iter_routes():
        for model in _body_models(route):
            checked.append(f"{path} {model.__name__}")
            if model.model_config.get("extra") != "forbid":
                lax.append(f"{sorted(route.methods)} {path}: {model.__name__}")
    assert lax == []
    assert len(checked) >= 20  # the walk really found the write schemas
