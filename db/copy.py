"""Copy a whole database into another one of the same schema, e.g. a SQLite catalogue into
a new PostgreSQL database when a bot outgrows one machine (the tests use it to fill a
PostgreSQL template from the shared SQLite catalogue).

The target is migrated first and must be empty; rows keep their ids, so a saved index
stays valid, and PostgreSQL's sequences are moved past the copied ids.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, insert, select, text, update

from db.models import Base
from db.store import Store

CHUNK = 500


async def copy_database(source: Store, target: Store) -> dict[str, int]:
    """Copy every table of ``source`` into ``target`` (migrated here); returns rows per table."""
    await target.create()
    counts: dict[str, int] = {}
    tables = list(Base.metadata.sorted_tables)
    async with target.engine.begin() as dst:
        for table in tables:
            if (await dst.execute(select(func.count()).select_from(table))).scalar_one():
                raise ValueError(f"the target database is not empty ({table.name} has rows)")
        duplicates: list[dict[str, int]] = []  # items refer to items: set once all are in
        async with source.engine.connect() as src:
            for table in tables:
                order = list(table.primary_key.columns)
                result = await src.stream(select(table).order_by(*order))
                n = 0
                async for chunk in result.mappings().partitions(CHUNK):
                    rows = [dict(r) for r in chunk]
                    if table.name == "items":
                        duplicates += [{"id": r["id"], "of": r["duplicate_of"]} for r in rows if r["duplicate_of"]]
                        rows = [r | {"duplicate_of": None} for r in rows]
                    await dst.execute(insert(table), rows)
                    n += len(rows)
                counts[table.name] = n
        if duplicates:
            items = Base.metadata.tables["items"]
            await dst.execute(
                update(items).where(items.c.id == bindparam("b_id")).values(duplicate_of=bindparam("b_of")),
                [{"b_id": d["id"], "b_of": d["of"]} for d in duplicates],
            )
        if target.dialect == "postgresql":
            for table in tables:
                pk = list(table.primary_key.columns)
                if len(pk) == 1 and pk[0].autoincrement is not False and pk[0].type.python_type is int:
                    await dst.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{pk[0].name}'), "
                            f"coalesce((SELECT max({pk[0].name}) FROM {table.name}), 0) + 1, false)"
                        )
                    )
    return counts
