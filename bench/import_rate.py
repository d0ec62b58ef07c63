"""Import throughput: generate a template-header CSV, import it through the real job runner into a
fresh database, and compare with the database's own COPY rate for the same rows.

    .venv/bin/python -m bench.import_rate --rows 1000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

Reports, from one run:
- rows/s of the import: the upload checks plus the whole job (parse, match, write, commit);
- CPU µs per row of the importing process and of the PostgreSQL backends serving the job (read
  from /proc while it runs: the server must be local), steadier than rates on a shared machine;
- two ceilings: COPY of the CSV text into a table of text columns, and COPY (binary, one
  transaction, commit included) of the imported customer rows themselves into an empty clone of
  customers with the same indexes, with the backend's CPU per row for it;
- the peak RSS of this process (the import streams: it should not grow with --rows).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent
HEADERS = [
    "客户编号",
    "客户名称",
    "联系人",
    "联系方式",
    "电子邮箱",
    "所属行业",
    "客户来源",
    "核心需求",
    "客户规模",
    "最近跟进日期",
    "跟进人",
    "沟通内容摘要",
    "下一步计划",
    "客户类型",
    "合作状态",
    "合作产品",
    "合同金额",
    "客户标签",
]
CITIES = [
    "北京",
    "上海",
    "广州",
    "深圳",
    "杭州",
    "南京",
    "苏州",
    "成都",
    "武汉",
    "西安",
    "重庆",
    "天津",
    "长沙",
    "郑州",
    "青岛",
    "厦门",
    "宁波",
    "合肥",
]
BRANDS = [
    "华南",
    "东方",
    "新华",
    "恒通",
    "瑞丰",
    "鼎盛",
    "天宇",
    "金桥",
    "博远",
    "中科",
    "安信",
    "宏达",
    "永盛",
    "汇通",
    "锦程",
    "海纳",
    "启明",
    "云帆",
]
TRADES = [
    ("智能制造", "制造业"),
    ("软件", "软件和信息技术服务业"),
    ("商贸", "批发业"),
    ("物流", "物流"),
    ("医疗器械", "医疗器械"),
    ("教育科技", "教育"),
    ("餐饮管理", "餐饮"),
    ("建筑工程", "建筑"),
]
SUFFIXES = ["有限公司", "股份有限公司", "有限责任公司", "集团有限公司"]
SURNAMES = [
    "张",
    "王",
    "李",
    "赵",
    "陈",
    "刘",
    "杨",
    "黄",
    "周",
    "吴",
    "徐",
    "孙",
    "马",
    "朱",
    "胡",
    "郭",
    "何",
    "林",
]
TITLES = ["经理", "总", "工", "主任", "女士", "先生"]
SOURCES = ["展会", "转介绍", "线上推广", "官网", "电话咨询", "公众号", "陌生拜访", "行业沙龙"]
NEEDS = ["产线数字化", "CRM 替换", "降本增效", "渠道拓展", "数据看板", "私有化部署"]
SCALES = ["20人以下", "20-99人", "100-299人", "300-999人", "1000人及以上", "50人"]
LIFECYCLE = ["潜在客户", "新客户", "老客户", "流失客户"]
STATUS = ["未合作", "合作中", "暂停合作", "终止合作", "潜在客户"]
TAGS = ["MES", "数据看板", "SaaS", "CRM", "华北", "华南", "重点", "复购"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        for i in range(rows):
            trade, industry = rnd.choice(TRADES)
            name = f"{rnd.choice(CITIES)}{rnd.choice(BRANDS)}{trade}{i}号{rnd.choice(SUFFIXES)}"
            phone = f"1{rnd.choice('3589')}{i:09d}"
            if i % 50 == 0:
                phone = phone[:3] + "****" + phone[-4:]  # legacy masked numbers
            month, day = rnd.randint(1, 12), rnd.randint(1, 28)
            date = rnd.choice(
                [f"2026年{month}月{day}日", f"2026/{month}/{day}", f"2026-{month:02d}-{day:02d}"]
            )
            w.writerow(
                [
                    "",
                    name,
                    rnd.choice(SURNAMES) + rnd.choice(TITLES),
                    phone,
                    f"c{i}@example{i % 97}.cn",
                    industry,
                    rnd.choice(SOURCES),
                    rnd.choice(NEEDS),
                    rnd.choice(SCALES),
                    date,
                    "",
                    "电话沟通，客户有意向" if i % 3 == 0 else "",
                    "下周回访" if i % 4 == 0 else "",
                    rnd.choice(LIFECYCLE),
                    rnd.choice(STATUS),
                    "MES 标准版" if i % 5 == 0 else "",
                    f"{rnd.randint(1, 500) * 1000:,}",
                    "、".join(rnd.sample(TAGS, rnd.randint(0, 3))),
                ]
            )


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database, sampled from /proc while a
    step runs (the server is local in this benchmark; elsewhere it reports nothing)."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    async def _sample(self, pg: object) -> None:
        rows = await pg.fetch(  # type: ignore[attr-defined]
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            self.database,
        )
        for r in rows:
            cpu = self._cpu(r["pid"])
            if cpu is not None:
                self.first.setdefault(r["pid"], cpu)
                self.last[r["pid"]] = cpu

    async def _run(self) -> None:
        import asyncpg

        pg = await asyncpg.connect(self.dsn)
        try:
            while True:
                await self._sample(pg)
                await asyncio.sleep(0.2)
        finally:
            await pg.close()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        # A backend's CPU before its first sample is missed: the job's connections open
        # within the first 0.2 s, before any real work.
        return sum(self.last[p] - self.first[p] for p in self.last)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _copy_ceiling(pg_dsn: str, dump: Path) -> tuple[float, float]:
    """Seconds to COPY the dumped customer rows into an empty clone of customers (same
    indexes), in one transaction, commit included; and the backend's CPU seconds for it."""
    import asyncpg

    pg = await asyncpg.connect(pg_dsn)
    try:
        await pg.execute("DROP TABLE IF EXISTS customers_clone")
        await pg.execute("CREATE TABLE customers_clone (LIKE customers INCLUDING ALL)")
        await pg.execute("CHECKPOINT")
        pid = await pg.fetchval("SELECT pg_backend_pid()")
        cpu0 = BackendCpu._cpu(pid) or 0.0
        t0 = time.perf_counter()
        async with pg.transaction():
            await pg.copy_to_table("customers_clone", source=str(dump), format="binary")
        return time.perf_counter() - t0, (BackendCpu._cpu(pid) or 0.0) - cpu0
    finally:
        await pg.close()


async def measure(url: str, csv_path: Path, rows: int, batch: int) -> dict[str, object]:
    import asyncpg

    from app.auth.permissions import ROLE_SCOPES, Role
    from app.auth.principal import Principal
    from app.cli import run_migrations
    from app.core.config import get_settings
    from app.core.db import build_engine, build_sessionmaker, create_database, to_async_url
    from app.imports import service, worker

    server = make_url(to_async_url(url))
    name = f"crm_bench_import_{uuid.uuid4().hex[:8]}"
    admin_dsn = server.set(drivername="postgresql", database="postgres").render_as_string(False)
    conn = await asyncpg.connect(admin_dsn)
    await create_database(conn, name)
    await conn.close()
    db_url = server.set(database=name).render_as_string(hide_password=False)
    pg_dsn = server.set(drivername="postgresql", database=name).render_as_string(False)
    settings = get_settings()
    settings.import_batch_rows = batch
    spool = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    settings.import_spool_dir = spool
    settings.max_upload_bytes = 10 * 1024**3
    try:
        await asyncio.to_thread(run_migrations, db_url)
        engine = build_engine(db_url, settings)
        async with engine.begin() as c:
            user_id = await c.scalar(
                text(
                    "INSERT INTO users (email, password_hash, role) "
                    "VALUES ('bench@example.com', 'x', 'data_admin') RETURNING id"
                )
            )
        principal = Principal("user", int(user_id), Role.data_admin, ROLE_SCOPES[Role.data_admin])

        backends = BackendCpu(admin_dsn, name)
        backends.start()
        cpu0 = _own_cpu()
        started = time.perf_counter()
        async with build_sessionmaker(engine)() as session, session.begin():
            with csv_path.open("rb") as fh:
                job = await service.create_job(
                    session,
                    principal,
                    source=fh,
                    file_name=csv_path.name,
                    dry_run=False,
                    duplicate_policy="skip",
                    settings=settings,
                )
        accepted = time.perf_counter()
        await worker.run_job(engine, job["id"])
        finished = time.perf_counter()
        own_cpu = _own_cpu() - cpu0
        backend_cpu = await backends.stop()
        async with engine.connect() as c:
            done = (
                (await c.execute(text("SELECT * FROM import_jobs WHERE id = :id"), job))
                .mappings()
                .one()
            )
            customers = await c.scalar(text("SELECT count(*) FROM customers"))
        await engine.dispose()

        # Ceiling 1: the CSV's text straight into a table of text columns.
        pg = await asyncpg.connect(pg_dsn)
        cols = ", ".join(f"c{i} text" for i in range(len(HEADERS)))
        await pg.execute(f"CREATE TABLE bench_raw ({cols})")
        t0 = time.perf_counter()
        await pg.copy_to_table("bench_raw", source=str(csv_path), format="csv", header=True)
        raw_csv_s = time.perf_counter() - t0
        await pg.execute("DROP TABLE bench_raw")
        dump = spool / "customers.bin"
        await pg.copy_from_table("customers", output=str(dump), format="binary")
        await pg.close()

        # Ceiling 2: the imported rows, binary, into a clone with the same indexes; as is, and
        # with the GIN settings the import itself uses.
        raw_rows_s, raw_cpu = await _copy_ceiling(pg_dsn, dump)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    job_s = finished - accepted
    total_s = finished - started
    import_rate = rows / total_s
    return {
        "rows": rows,
        "status": done["status"],
        "error": done["error"],
        "imported": done["imported"],
        "failed": done["failed"],
        "warnings": done["warnings"],
        "customers_in_db": customers,
        "batch_rows": batch,
        "upload_checks_s": round(accepted - started, 2),
        "job_s": round(job_s, 2),
        "import_rows_per_s": round(import_rate),
        "job_rows_per_s": round(rows / job_s),
        "importer_cpu_us_per_row": round(own_cpu / rows * 1e6),
        "postgres_cpu_us_per_row": round(backend_cpu / rows * 1e6),
        "raw_copy_postgres_cpu_us_per_row": round(raw_cpu / rows * 1e6),
        "raw_copy_csv_text_rows_per_s": round(rows / raw_csv_s),
        "raw_copy_customer_rows_per_s": round(rows / raw_rows_s),
        "import_vs_raw_customer_copy": round(import_rate / (rows / raw_rows_s), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    csv_path = ROOT / "data" / f"import_{args.rows}.csv"
    if not csv_path.exists():
        t0 = time.perf_counter()
        generate(csv_path, args.rows)
        print(f"generated {csv_path} in {time.perf_counter() - t0:.1f}s", flush=True)
    result = asyncio.run(measure(args.database_url, csv_path, args.rows, args.batch))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
