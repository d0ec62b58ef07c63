"""The `crm` command: serve, migrate, create-user, recompute, openapi."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path

from app.core.config import get_settings
from app.core.db import resolve_database_url

ROOT = Path(__file__).resolve().parent.parent


def run_migrations(url: str) -> None:
    from alembic.config import Config

    from alembic import command

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["database_url"] = url
    command.upgrade(cfg, "head")


async def _create_user(url: str, email: str, password: str, role: str) -> None:
    from app.auth import service
    from app.auth.permissions import Role
    from app.auth.schemas import UserCreate
    from app.core.db import build_engine, build_sessionmaker

    engine = build_engine(url, get_settings())
    try:
        async with build_sessionmaker(engine)() as session, session.begin():
            await service.create_user(
                session, "cli", UserCreate(email=email, password=password, role=Role(role))
            )
    finally:
        await engine.dispose()


async def _has_users(url: str) -> bool:
    from sqlalchemy import text

    from app.core.db import build_engine

    engine = build_engine(url, get_settings())
    try:
        async with engine.connect() as conn:
            return bool(await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM users)")))
    finally:
        await engine.dispose()


def cmd_migrate(_: argparse.Namespace) -> None:
    url = resolve_database_url(get_settings())
    run_migrations(url)
    print("migrations applied")


def cmd_create_user(args: argparse.Namespace) -> None:
    url = resolve_database_url(get_settings())
    asyncio.run(_create_user(url, args.email, args.password, args.role))
    print(f"user created with role {args.role}")


async def _recompute(url: str, wait: bool) -> dict[str, object] | None:
    from app.core.db import build_engine, build_sessionmaker
    from app.segments import service

    engine = build_engine(url, get_settings())
    try:
        async with build_sessionmaker(engine)() as session, session.begin():
            return await service.run_sweep(session, cause="manual", wait=wait)
    finally:
        await engine.dispose()


def cmd_recompute(args: argparse.Namespace) -> None:
    import orjson

    url = resolve_database_url(get_settings())
    result = asyncio.run(_recompute(url, args.wait))
    if result is None:
        print("another sweep is running; nothing done (use --wait to queue behind it)")
        sys.exit(1)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    settings = get_settings()
    embedded = not settings.database_url
    url = resolve_database_url(settings)
    if embedded or args.migrate:
        run_migrations(url)
    if not asyncio.run(_has_users(url)):
        password = secrets.token_urlsafe(12)
        asyncio.run(_create_user(url, settings.first_admin_email, password, "admin"))
        base = f"http://{args.host}:{args.port}"
        # Printed to the terminal once, never logged.
        print(
            "\nFirst admin created. Log in with:\n"
            f"  curl -s -X POST {base}/api/v1/auth/token "
            f"-d username={settings.first_admin_email} -d password={password}\n"
            f"API docs: {base}/docs\n",
            flush=True,
        )
    os.environ["DATABASE_URL"] = url
    uvicorn.run(
        "app.main:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )


async def _rotate(url: str) -> int:
    from app.core.db import build_engine, build_sessionmaker
    from app.privacy import service as privacy

    engine = build_engine(url, get_settings())
    try:
        async with build_sessionmaker(engine)() as session, session.begin():
            return await privacy.rotate_keys(session)
    finally:
        await engine.dispose()


def cmd_rotate_key(_: argparse.Namespace) -> None:
    url = resolve_database_url(get_settings())
    print(f"re-encrypted {asyncio.run(_rotate(url))} customers under the active key")


def cmd_openapi(args: argparse.Namespace) -> None:
    import orjson

    from app.main import create_app

    doc = create_app(database_url="postgresql+asyncpg://unused/unused").openapi()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="crm", description="Customer information service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API (embedded PostgreSQL when no DATABASE_URL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--migrate", action="store_true", help="apply migrations first")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    create_user = sub.add_parser("create-user", help="create a staff user")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--password", required=True)
    create_user.add_argument(
        "--role",
        required=True,
        choices=["admin", "manager", "sales", "service", "marketing", "data_admin"],
    )
    create_user.set_defaults(func=cmd_create_user)

    rotate = sub.add_parser(
        "rotate-key", help="re-encrypt sensitive fields under CRM_ENCRYPTION_ACTIVE_KEY"
    )
    rotate.set_defaults(func=cmd_rotate_key)

    recompute = sub.add_parser(
        "recompute",
        help="run the segmentation sweep now (classes, RFM quintiles, shared-pool release)",
    )
    recompute.add_argument(
        "--wait", action="store_true", help="wait for a running sweep instead of giving up"
    )
    recompute.set_defaults(func=cmd_recompute)

    openapi = sub.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--output", default=str(ROOT / "openapi" / "openapi.json"))
    openapi.set_defaults(func=cmd_openapi)

    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
    sys.exit(0)
