"""The storage engine's savepoint: a failed block loses its own writes and nothing else."""
from __future__ import annotations

import pytest

from bot.storage import engine, migrations, user_state


class Boom(Exception):
    pass


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "bot.db"
    migrations.migrate(path)
    db = engine.connect(path)
    yield db
    db.close()


def test_a_failed_block_inside_a_transaction_loses_only_its_own_writes(database):
    with engine.transaction(database):
        user_state.save_state(database, "before", {"n": 1})
        with pytest.raises(Boom), engine.savepoint(database):
            user_state.save_state(database, "inside", {"n": 2})
            raise Boom
        user_state.save_state(database, "after", {"n": 3})
    assert user_state.load_state(database, "before") == {"n": 1}
    assert user_state.load_state(database, "inside") == {}
    assert user_state.load_state(database, "after") == {"n": 3}


def test_a_failed_first_block_of_a_transaction_is_undone_and_the_rest_commits(database):
    with engine.transaction(database):
        with pytest.raises(Boom), engine.savepoint(database):
            user_state.save_state(database, "inside", {"n": 2})
            raise Boom
        user_state.save_state(database, "after", {"n": 3})
    assert user_state.load_state(database, "inside") == {}
    assert user_state.load_state(database, "after") == {"n": 3}


def test_a_block_that_succeeds_commits_with_its_transaction(database):
    with engine.transaction(database):
        with engine.savepoint(database):
            user_state.save_state(database, "inside", {"n": 2})
    assert user_state.load_state(database, "inside") == {"n": 2}


def test_outside_a_transaction_a_failed_block_is_undone_whole(database):
    with pytest.raises(Boom), engine.savepoint(database):
        user_state.save_state(database, "a", {"n": 1})
        user_state.save_state(database, "b", {"n": 2})
        raise Boom
    assert user_state.load_state(database, "a") == {} and user_state.load_state(database, "b") == {}
    # The write lock was let go: another write goes straight through.
    user_state.save_state(database, "c", {"n": 3})
    assert user_state.load_state(database, "c") == {"n": 3}
