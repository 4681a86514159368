"""Trust changes as a node lives through them: leaked keys, revocations arriving late or
early, clocks set wrong, records out of order. In-process against a real store on disk."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trustkit import DAY, T0, YEAR, Chain, Delegation, bundle_bytes, publisher_file, signed, write

from meshdrop.core.records import Reason, SignedRecord
from meshdrop.errors import MeshdropError, RollbackError, TrustError
from meshdrop.store.store import Outcome, Store

MAX_VERSION = 2**63 - 1


class World:
    """One publisher (root r1; signers s1 and, from record 2, s2) and its artefacts."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.chain = Chain(["r1"], 1)
        self.r1 = signed(self.chain.record(1, signers=(Delegation("s1"),)), ["r1"])
        self.r2 = signed(self.chain.record(2, signers=(Delegation("s1"), Delegation("s2"))), ["r1"])
        self.r3_compromised = signed(
            self.chain.record(
                3, signers=(Delegation("s1"),), revoked=(("s2", Reason.COMPROMISED, T0),)
            ),
            ["r1"],
        )

    def pub(self, name: str, records: Sequence[SignedRecord]) -> Path:
        return write(self.folder / f"{name}.pub", publisher_file(records))

    def bundle(
        self,
        file: str,
        signer: str,
        version: int,
        chain: Sequence[SignedRecord],
        name: str = "news",
        created: int = T0,
        expires: int | None = None,
    ) -> Path:
        data = bundle_bytes(
            chain,
            self.chain.id,
            signer,
            name=name,
            version=version,
            created=created,
            expires=expires,
            data=f"{file} {version}".encode(),
        )
        return write(self.folder / f"{file}.mdrop", data)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def store(tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr("meshdrop.store.store.time.time", lambda: float(T0))
    with Store(tmp_path / "node") as s:
        s.trust_add(publisher_file([world.r1]), "publisher.pub")
        yield s


def visible(store: Store) -> list[tuple[str, int]]:
    return [(b.name, b.version) for b in store.list_bundles()]


def test_leaked_key_max_version_then_real_next_version(store: Store, world: World) -> None:
    real5 = world.bundle("real5", "s1", 5, [world.r1, world.r2])
    leaked = world.bundle("leaked", "s2", MAX_VERSION, [world.r1, world.r2])
    real6 = world.bundle("real6", "s1", 6, [world.r1, world.r2, world.r3_compromised])
    assert store.import_file(real5).outcome is Outcome.IMPORTED
    assert store.import_file(leaked).outcome is Outcome.REPLACED
    assert visible(store) == [("news", MAX_VERSION)]
    # The revocation arrives on its own (a stick, a peer) and withdraws the leaked bundle...
    update = store.update_publisher(publisher_file([world.r1, world.r2, world.r3_compromised]), "p")
    assert update.outcome is Outcome.PUBLISHER_UPDATED and update.version == 3
    assert visible(store) == []
    assert [b.state for b in store.list_bundles(include_hidden=True)] == ["withdrawn"]
    # ...and the leaked key's absurd version no longer blocks the real next one.
    assert store.import_file(real6).outcome is Outcome.IMPORTED
    assert visible(store) == [("news", 6)]
    # The rollback mark the honest key set still holds: version 5 stays refused.
    with pytest.raises(RollbackError):
        store.import_file(world.bundle("real5-again", "s1", 5, [world.r1, world.r2]))


def test_revocation_first_then_leaked_bundle_is_refused(store: Store, world: World) -> None:
    store.update_publisher(publisher_file([world.r1, world.r2, world.r3_compromised]), "p")
    with pytest.raises(TrustError, match="withdrawn"):
        store.import_file(world.bundle("leaked", "s2", MAX_VERSION, [world.r1, world.r2]))
    assert visible(store) == []


def test_revocation_travelling_inside_a_bundle_withdraws_older_bundles(
    store: Store, world: World
) -> None:
    store.import_file(world.bundle("other", "s2", 1, [world.r1, world.r2], name="other"))
    assert visible(store) == [("other", 1)]
    store.import_file(world.bundle("news", "s1", 1, [world.r1, world.r2, world.r3_compromised]))
    assert visible(store) == [("news", 1)]


def test_clock_set_back_two_years_does_not_revive_expired_content(
    store: Store, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = [world.r1]
    store.import_file(
        world.bundle("old", "s1", 1, chain, name="old", created=T0 - 10 * DAY, expires=T0 + DAY)
    )
    monkeypatch.setattr("meshdrop.store.store.time.time", lambda: float(T0 + 2 * DAY))
    store.import_file(world.bundle("newer", "s1", 1, chain, created=T0 + 2 * DAY))
    assert visible(store) == [("news", 1)]
    monkeypatch.setattr("meshdrop.store.store.time.time", lambda: float(T0 - 2 * YEAR))
    assert store.now() == T0 + 2 * DAY  # the clock floor: the newest signed time seen
    assert visible(store) == [("news", 1)]
    assert {b.name: b.state for b in store.list_bundles(include_hidden=True)} == {
        "news": "ok",
        "old": "expired",
    }


def test_future_dated_bundle_does_not_drag_the_clock_floor_forward(
    store: Store, world: World
) -> None:
    store.import_file(world.bundle("future", "s1", 1, [world.r1], created=T0 + 10 * DAY))
    assert store.now() == T0
    store.import_file(world.bundle("soon", "s1", 1, [world.r1], name="soon", expires=T0 + 3600))
    assert ("soon", 1) in visible(store)


def test_clock_forward_two_years_expires_content_but_keeps_it(
    store: Store, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.import_file(world.bundle("b", "s1", 1, [world.r1], expires=T0 + YEAR))
    monkeypatch.setattr("meshdrop.store.store.time.time", lambda: float(T0 + 2 * YEAR))
    assert visible(store) == []
    assert [b.state for b in store.list_bundles(include_hidden=True)] == ["expired"]


def test_records_out_of_order_never_go_back(store: Store, world: World) -> None:
    store.import_file(world.bundle("n", "s1", 1, [world.r1, world.r2, world.r3_compromised]))
    again = store.update_publisher(publisher_file([world.r1, world.r2]), "older.pub")
    assert again.outcome is Outcome.ALREADY_HAD and again.version == 3
    with pytest.raises(TrustError, match="gap"):
        store.update_publisher(
            publisher_file([world.r1, signed(world.chain.record(5), ["r1"])]), "gap.pub"
        )
    assert store.trust_list()[0].version == 3


def test_update_never_trusts_a_new_publisher(store: Store, tmp_path: Path) -> None:
    stranger = Chain(["x1"], 1, name="Stranger")
    with pytest.raises(TrustError, match="does not trust"):
        store.update_publisher(publisher_file([signed(stranger.record(1), ["x1"])]), "s.pub")
    assert len(store.trust_list()) == 1


# Two nodes given the same records and bundles in different orders end in the same state
# (after a second round, as a mesh retries: a bundle refused before its revocation arrived
# is offered again).
ITEMS = ["r2", "r3", "real5", "leaked", "real6", "other"]


def world_items(world: World) -> dict[str, Path]:
    return {
        "r2": world.pub("r2", [world.r1, world.r2]),
        "r3": world.pub("r3", [world.r1, world.r2, world.r3_compromised]),
        "real5": world.bundle("real5", "s1", 5, [world.r1, world.r2]),
        "leaked": world.bundle("leaked", "s2", MAX_VERSION, [world.r1, world.r2]),
        "real6": world.bundle("real6", "s1", 6, [world.r1, world.r2]),
        "other": world.bundle("other", "s2", 1, [world.r1, world.r2], name="other"),
    }


def node_state(
    order: Sequence[str], items: dict[str, Path], folder: Path, first: SignedRecord
) -> tuple[object, ...]:
    with Store(folder) as node:
        node.trust_add(publisher_file([first]), "publisher.pub")
        for _round in range(2):
            for name in order:
                try:
                    if items[name].suffix == ".pub":
                        node.update_publisher(items[name].read_bytes(), name)
                    else:
                        node.import_file(items[name])
                except MeshdropError:
                    pass
        return (node.trust_list()[0].version, tuple(visible(node)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(ITEMS), st.permutations(ITEMS))
def test_same_records_in_any_order_give_the_same_state(
    order_a: list[str], order_b: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        world = World(folder)
        items = world_items(world)
        state_a = node_state(order_a, items, folder / "a", world.r1)
        state_b = node_state(order_b, items, folder / "b", world.r1)
        assert state_a == state_b
        # The compromised key's bundles ("leaked", "other") are withdrawn everywhere.
        assert state_a == (3, (("news", 6),))
