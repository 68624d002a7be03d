"""Storage: all SQL of the service, behind domain verbs (see docs/architecture.md).

engine (connections, write lock, transactions), migrations, and one module per area:
messages, user_state, applications, push, staff, kv. Nothing outside this package writes
SQL, so another engine could stand behind the same verbs.
"""
