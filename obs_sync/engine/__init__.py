"""One sync run: fan out the VDNs (bounded), fetch -> diff -> apply each, record the run.

The only package that knows both the iSales client and the store exist. Workers pull VDN
ids one at a time, so memory is bounded by the VDNs in flight, not by the data set: each
worker fetches a VDN, applies it in its own transaction, and drops it before taking the
next. There are ``2 x isales.max_concurrency`` workers and ``max_concurrency`` fetch slots:
while some workers write, the others keep every slot fetching, and the server never sees
more than ``max_concurrency`` requests at once.

Start-up is overlapped: the workers start fetching at once while another thread connects,
checks (or applies) migrations and opens the run record; a worker waits for that only
when it has a snapshot to apply. A one-shot ``obs-sync sync`` talks to PostgreSQL with
plain psycopg (its own small pool) and imports SQLAlchemy and Alembic only when a
migration is due; with an ``engine`` (the daemon), the store borrows the engine's
connections.

Its modules: :mod:`.run` (:func:`~.run.run_sync`, the run from start to record),
:mod:`.prepare` (the database side, made ready in the background), :mod:`.workers` (the
threads that fetch and apply), :mod:`.sizing` (threads and connections per run) and
:mod:`.report` (the log lines of a VDN and of a run).
"""
