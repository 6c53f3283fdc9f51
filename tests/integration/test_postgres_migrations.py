"""Migrations on both databases (``db_url``: sqlite / postgres): the schema they make is the
models' (columns, indexes, constraint names), they are idempotent, they go down and up
again, and PostgreSQL databases made before the naming convention are brought to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from db.migrate import migrate
from db.models import Base
from db.store import Store


@pytest.fixture
def url(db_url, tmp_path: Path) -> str:
    return db_url or f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}"


def _schema(conn) -> dict:
    insp = inspect(conn)
    out = {}
    for t in insp.get_table_names():
        if t == "alembic_version":
            continue
        out[t] = {
            "columns": {c["name"] for c in insp.get_columns(t)},
            "indexes": {i["name"] for i in insp.get_indexes(t) if not i.get("duplicates_constraint")},
            "uniques": {u["name"] for u in insp.get_unique_constraints(t)},
            "fks": {tuple(f["constrained_columns"]) for f in insp.get_foreign_keys(t)},
        }
        if conn.dialect.name == "postgresql":
            out[t]["fk_names"] = {f["name"] for f in insp.get_foreign_keys(t)}
            out[t]["pk"] = insp.get_pk_constraint(t)["name"]
    return out


def _expected(dialect: str) -> dict:
    out = {}
    for table in Base.metadata.sorted_tables:
        out[table.name] = {
            "columns": {c.name for c in table.columns},
            "indexes": {i.name for i in table.indexes},
            "uniques": {c.name for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"},
            "fks": {tuple(c.name for c in fk.columns) for fk in table.foreign_key_constraints},
        }
        if dialect == "postgresql":
            out[table.name]["fk_names"] = {fk.name for fk in table.foreign_key_constraints}
            out[table.name]["pk"] = table.primary_key.name
    return out


async def _inspect(url: str) -> tuple[dict, str]:
    store = Store(url)
    try:
        async with store.engine.connect() as conn:
            found = await conn.run_sync(_schema)
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        return found, version
    finally:
        await store.close()


async def test_migrations_make_the_models_schema(url) -> None:
    store = Store(url)
    await store.create()
    await store.create()  # idempotent: a second start migrates nothing
    dialect = store.dialect
    await store.close()
    found, version = await _inspect(url)
    assert version == "0003"
    assert found == _expected(dialect)
    # the foreign keys /forget and removals delete by are indexed
    assert "ix_recommendations_photo_id" in found["recommendations"]["indexes"]
    assert "ix_items_duplicate_of" in found["items"]["indexes"]
    assert "ix_trends_started_by" in found["trends"]["indexes"]


async def test_down_to_the_first_revision_and_up_again_keeps_the_rows(url) -> None:
    store = Store(url)
    await store.create()
    from db.store import NewItem

    (item_id,) = await store.add_items([NewItem(source="t", external_id="1", title="Coat", image=b"x", price=19.99)])
    await store.close()
    await migrate(url, "0001", down=True)
    _, version = await _inspect(url)
    assert version == "0001"
    await migrate(url)
    found, version = await _inspect(url)
    assert version == "0003" and "trend_leases" in found
    store = Store(url)
    try:
        item = (await store.items([item_id]))[item_id]
        assert item.title == "Coat" and item.price == pytest.approx(19.99) and isinstance(item.price, float)
    finally:
        await store.close()


async def test_prices_are_exact_to_the_cent(url) -> None:
    from db.store import NewItem

    store = Store(url)
    await store.create()
    try:
        ids = await store.add_items(
            [NewItem(source="t", external_id=str(i), title="x", image=b"x", price=p)
             for i, p in enumerate([0.1 + 0.2, 1234567890.12, 9.999])]
        )  # fmt: skip
        items = await store.items(ids)
        assert [items[i].price for i in ids] == [0.3, 1234567890.12, 10.0]
    finally:
        await store.close()


async def test_a_postgres_database_from_before_the_naming_convention_is_renamed(db_url) -> None:
    """PostgreSQL names unnamed constraints itself (``items_pkey``, ``photos_user_id_fkey``);
    0003 renames them to the convention, so later migrations can drop them by name."""
    if db_url is None:
        pytest.skip("PostgreSQL only: SQLite's batch mode rebuilds tables with the convention's names")
    await migrate(db_url, "0002")
    store = Store(db_url)
    async with store.engine.begin() as conn:
        await conn.execute(text('ALTER TABLE items RENAME CONSTRAINT "pk_items" TO "items_pkey"'))
        await conn.execute(
            text('ALTER TABLE photos RENAME CONSTRAINT "fk_photos_user_id_users" TO "photos_user_id_fkey"')
        )
    await store.close()
    await migrate(db_url)
    found, _ = await _inspect(db_url)
    assert found["items"]["pk"] == "pk_items"
    assert found["photos"]["fk_names"] == {"fk_photos_user_id_users"}


async def test_a_database_from_before_migrations_is_adopted(url) -> None:
    """The 0001 tables without an alembic_version (and a table added late missing): the
    missing table is made, the database stamped at 0001 and migrated to the head."""
    await migrate(url, "0001")
    store = Store(url)
    async with store.engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
        await conn.execute(text("DROP TABLE offers"))
    await store.create()
    async with store.engine.connect() as conn:
        offers = (await conn.execute(text("SELECT count(*) FROM offers"))).scalar_one()
    await store.close()
    found, version = await _inspect(url)
    assert version == "0003" and offers == 0 and "garments" in found
