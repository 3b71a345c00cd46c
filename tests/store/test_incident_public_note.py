"""The incident's public note on both backends: set, withdrawn, kept across re-derivation,
and read back without anything internal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ioc.store import SqlStore
from ioc.store.incidents import PUBLIC_NOTE_LIMIT, IncidentStore, NotFound, Query
from tests.store.test_incidents_store import T0, run


@pytest.fixture
async def ledger(store: SqlStore, store_url: str) -> AsyncIterator[IncidentStore]:
    opened = IncidentStore(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_public_note_is_kept_when_the_incident_is_derived_again(
        store: SqlStore, ledger: IncidentStore) -> None:
    await store.append(run("portal", "uddd"))
    await ledger.sync(T0 + 100)
    (item,), _ = await ledger.list(Query(), now=T0 + 100)
    assert item["public_note"] is None
    stored = await ledger.set_public_note(item["id"], actor="ops", text="  Đang khắc phục  ",
                                          now=T0 + 110, text_en=" Being repaired ")
    assert stored == {"id": item["id"], "public_note": "Đang khắc phục",
                      "public_note_en": "Being repaired", "by": "ops", "at": T0 + 110}
    await ledger.add_note(item["id"], actor="ops", text="internal", now=T0 + 111)
    await store.append(run("portal", "u", t0=T0 + 120))  # recovers: the row is rewritten
    await ledger.sync(T0 + 200)
    (again,), _ = await ledger.list(Query(), now=T0 + 200)
    assert again["ended_at"] == T0 + 120 and again["public_note"] == "Đang khắc phục"
    assert again["public_note_en"] == "Being repaired"
    (public,) = await ledger.public_between(T0, T0 + 300, ["portal"])
    assert (public.target, public.started_at, public.ended_at, public.public_note,
            public.public_note_at, public.public_note_en) == (
        "portal", T0 + 30, T0 + 120, "Đang khắc phục", T0 + 110, "Being repaired")
    assert not hasattr(public, "causes") and not hasattr(public, "notes")
    assert await ledger.public_between(T0, T0 + 300, ["other"]) == []
    assert await ledger.public_between(T0 + 500, T0 + 600, ["portal"]) == []


async def test_a_public_note_is_checked_and_can_be_withdrawn(store: SqlStore,
                                                            ledger: IncidentStore) -> None:
    await store.append(run("portal", "udu"))
    await ledger.sync(T0 + 100)
    (item,), _ = await ledger.list(Query(), now=T0 + 100)
    with pytest.raises(ValueError, match="at most"):
        await ledger.set_public_note(item["id"], actor="ops", text="x" * (PUBLIC_NOTE_LIMIT + 1),
                                     now=T0)
    with pytest.raises(NotFound):
        await ledger.set_public_note("nope", actor="ops", text="x", now=T0)
    await ledger.set_public_note(item["id"], actor="ops", text="Xong", now=T0 + 1)
    cleared = await ledger.set_public_note(item["id"], actor="ops", text="", now=T0 + 2)
    assert cleared["public_note"] is None
    (public,) = await ledger.public_between(T0, T0 + 300, ["portal"])
    assert public.public_note is None and public.public_note_at is None
