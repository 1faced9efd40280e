"""A real example on the embedded default, SQLite: run it twice and watch the count grow."""

from __future__ import annotations

import persistdict

with persistdict.open("quickstart.db", table="users") as users:
    if not users:  # first run: one batch, one transaction
        users.update({f"user_{i}": {"id": i, "visits": 0} for i in range(1000)})
    with users.transaction():  # atomic read-modify-write, even across processes
        record = users["user_7"]
        record["visits"] += 1
        users["user_7"] = record  # per-key backends return copies: store the change back
    print(f"{len(users)} users; user_7 has visited {users['user_7']['visits']} time(s)")
    print(users)

with persistdict.open("quickstart.json") as state:  # a JSON file holds live objects
    state.setdefault("runs", {"count": 0})["count"] += 1  # nested change, saved on close
    print(f"this example has run {state['runs']['count']} time(s); see quickstart.json")
