"""Figures for features that land later: each skips, with a note, while its endpoint is absent.

When an endpoint appears, its hook reports "present, not measured yet" so the gap is visible in
the report until a measurement is written here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hook:
    name: str
    method: str
    path: str
    table: str | None = None


HOOKS = [
    Hook("record an interaction (tier recompute + audit row)", "POST", "/api/v1/interactions"),
    Hook("whole-base sweep: no-op, 5% changed, all changed", "POST", "/api/v1/segments/recompute"),
    Hook("bulk-tag by codes / by saved segment", "POST", "/api/v1/tags/{id}/bulk"),
    Hook("import rate vs raw COPY of the same rows", "POST", "/api/v1/imports"),
    Hook("webhook ingest", "POST", "/api/v1/webhooks/{source}"),
    Hook("interactions in the base (5,000,000 at scale 1.0)", "", "", table="interactions"),
]


def api_routes() -> set[tuple[str, str]]:
    from app.main import iter_routes

    return {(m, path) for path, route in iter_routes() for m in route.methods or ()}


def run_hooks(tables: set[str]) -> list[dict[str, str]]:
    routes = api_routes()
    out = []
    for hook in HOOKS:
        if hook.table is not None:
            present = hook.table in tables
            what = f"table {hook.table}"
        else:
            present = (hook.method, hook.path) in routes
            what = f"{hook.method} {hook.path}"
        status = "present, not measured yet" if present else "skipped"
        todo = (
            "add its loader to BIG_TABLES in bench/generate.py"
            if hook.table
            else "add its measurement to bench/hooks.py"
        )
        note = f"{what} exists: {todo}" if present else f"{what} is not in this build"
        out.append({"name": hook.name, "status": status, "note": note})
    return out
