"""SQLAlchemy table definitions: the one place the store's schema is written down."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: bump when the tables change; a store written by a newer schema refuses to open
SCHEMA_VERSION = 11
# Version 1: twins, batches, observations, decisions, quarantine, ledger, models.
# Version 2: population_models. Version 3: clone_queries. Version 4: owners, jobs.
# Version 5: twins.data_batch. Version 6: twins.uid, jobs.twin_uid, sessions.
# Version 7: twins.name (ids unique per owner; ``twins.id`` is the store key),
# population_models.owners, population_sharing. Version 8: job queue indexes.
# Version 9: forecast_log, monitor_policies. Version 10: model_versions.live_band,
# forecast_log.band_scale (the monitor's live band, twinkit.monitor.band).
# Version 11: population_withdrawn (priors retrained without a forgotten person).
# A store at an older version gains the new tables on open, and the new columns
# (``ADDED_COLUMNS``).

metadata = MetaData()

#: the length of a twin's store key: an owner's name (128), "/" and the id (128)
KEY_LENGTH = 257

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

twins = Table(
    "twins",
    metadata,
    # The store key, which the other tables point at: "owner/name" since version 7, the
    # bare name for a twin created before (ids were unique in the whole store then).
    Column("id", String(KEY_LENGTH), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("owner", String(128), nullable=False, index=True),
    Column("metadata", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    # The batch that last wrote the twin's observations, set in the same transaction: the
    # watermark of its signals, which changes whenever they do (batch ids are never reused).
    # NULL for a twin without data since version 5. The service caches forecasts by it.
    Column("data_batch", Integer, nullable=True),
    # The twin's internal identity (a random hex), new at every creation: a job or a fit
    # checks it in the transaction that writes, so work started for a deleted twin never
    # lands on a later twin of the same id. Filled in for older twins when the store opens.
    Column("uid", String(32), nullable=True),
    # The id its owner knows it by, unique per owner (whatever the case of its letters:
    # checked on creation). Filled in (= id) for older twins when the store opens.
    Column("name", String(128), nullable=True),
)
Index("ux_twins_uid", twins.c.uid, unique=True)
Index("ux_twins_owner_name", twins.c.owner, twins.c.name, unique=True)
Index("ix_twins_name", twins.c.name)

# One row per (twin, signal): declared at creation or first seen at ingest. Observations
# point at the integer id, which keeps the big table narrow.
channels = Table(
    "channels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("twin_id", String(KEY_LENGTH), ForeignKey("twins.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("low", Float, nullable=True),
    Column("high", Float, nullable=True),
    Column("declared", Integer, nullable=False),
    UniqueConstraint("twin_id", "name", name="uq_channels_twin_name"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Not unique: a batch retired by deleting its twin may be ingested again.
    Column("content_hash", String(64), nullable=False, index=True),
    Column("active", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("source", Text, nullable=False),
    Column("twins", Text, nullable=False),  # JSON list of the twins the batch names
    Column("n_rows", Integer, nullable=False),
    Column("n_stored", Integer, nullable=False),
    Column("n_quarantined", Integer, nullable=False),
    Column("n_duplicates", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
)

observations = Table(
    "observations",
    metadata,
    Column("channel_id", Integer, ForeignKey("channels.id"), primary_key=True),
    Column("t", BigInteger, primary_key=True),  # microseconds since 1970-01-01 UTC
    Column("value", Float, nullable=False),
    Column("batch_id", Integer, ForeignKey("batches.id"), nullable=False),
    sqlite_with_rowid=False,
)
# No index on batch_id: it would double the cost of every bulk insert, and only the rare
# whole-store checks (verify, release, delete) look rows up by batch.

decisions = Table(
    "decisions",
    metadata,
    Column("twin_id", String(KEY_LENGTH), ForeignKey("twins.id"), primary_key=True),
    Column("item_id", String(256), primary_key=True),
    Column("features", Text, nullable=False),  # canonical JSON object name -> float
    Column("label", String(256), nullable=False),
    Column("batch_id", Integer, ForeignKey("batches.id"), nullable=False),
)
Index("ix_decisions_batch", decisions.c.batch_id)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", Integer, ForeignKey("batches.id"), nullable=False),
    Column("twin_id", String(KEY_LENGTH), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("row", Integer, nullable=False),
    Column("record", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("released_at", String(40), nullable=True),
)

ledger = Table(
    "ledger",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("twin_id", String(KEY_LENGTH), nullable=True, index=True),
    Column("event", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("twin_id", String(KEY_LENGTH), ForeignKey("twins.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("model", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("data_hash", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    # The live band the monitor set (JSON: horizon minutes -> scale of the model's band;
    # twinkit.monitor.band); NULL until enough of the version's forecasts were scored.
    Column("live_band", Text, nullable=True),
    UniqueConstraint("twin_id", "version", name="uq_model_versions_twin_version"),
)

# Population priors: one network trained on many twins, the starting point of personal
# models. Not tied to one twin.
population_models = Table(
    "population_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", Integer, nullable=False, unique=True),
    Column("model", String(64), nullable=False),
    Column("target", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("twins", Text, nullable=False),
    Column("data_hash", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    # JSON list of the owners whose twins it pools: a twin's fit starts from it only if its
    # owner is one of them and it pools that owner alone or owners who all share. Filled
    # in for older priors (the owners of their twins) when the store opens.
    Column("owners", Text, nullable=True),
)

# Forecasts a twin served (and its previous version's, in shadow), one row per horizon,
# kept to score them once the readings they forecast arrive. ``realised`` is the mean of
# the target's stored readings in [target_t, target_end): the grid bin the forecast was
# for, the same truth the holdout evaluation scores against. Every write of observations
# sets it again for the rows whose bins it touched (see ``store/forecast_log.py``).
forecast_log = Table(
    "forecast_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel_id", Integer, ForeignKey("channels.id"), nullable=False),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("role", String(8), nullable=False),  # "served" or "shadow"
    Column("origin_t", BigInteger, nullable=False),  # microseconds since 1970, as observations
    Column("horizon", Integer, nullable=False),  # minutes after the origin
    Column("target_t", BigInteger, nullable=False),
    Column("target_end", BigInteger, nullable=False),
    Column("mean", Float, nullable=False),
    Column("q05", Float, nullable=False),
    Column("q50", Float, nullable=False),
    Column("q95", Float, nullable=False),
    Column("issued_at", String(40), nullable=False),
    Column("realised", Float, nullable=True),
    # the live band's scale the forecast was served with (NULL: none, the model's own band)
    Column("band_scale", Float, nullable=True),
    UniqueConstraint(
        "channel_id", "version_id", "role", "origin_t", "horizon", name="uq_forecast_log_one"
    ),
)
Index("ix_forecast_log_target", forecast_log.c.channel_id, forecast_log.c.target_t)

# What the monitor does when it finds drift in a twin's streams: "alert" (a ledger entry
# and an alert on the health view) or "refit" (that, and a new fit). A twin without a
# row has the default policy, alert.
monitor_policies = Table(
    "monitor_policies",
    metadata,
    Column("twin_id", String(KEY_LENGTH), ForeignKey("twins.id"), primary_key=True),
    Column("policy", String(16), nullable=False),
    Column("detector", String(32), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# Owners who pool their twins' data with each other's for a shared population prior. An
# owner not listed gets priors of its own twins only (the default).
population_sharing = Table(
    "population_sharing",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("since", String(40), nullable=False),
)

# Population priors that serve no more: retrained without a person who asked to be
# forgotten (``replaced_by``: the version that takes its place; its weights are deleted).
population_withdrawn = Table(
    "population_withdrawn",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("replaced_by", Integer, nullable=True),
    Column("withdrawn_at", String(40), nullable=False),
)


# Questions a decision twin's clone asked its donor; answered when the answer is ingested.
clone_queries = Table(
    "clone_queries",
    metadata,
    Column("twin_id", String(KEY_LENGTH), ForeignKey("twins.id"), primary_key=True),
    Column("item_id", String(256), primary_key=True),
    Column("strategy", String(32), nullable=False),
    Column("features", Text, nullable=False),  # canonical JSON object name -> float
    Column("asked_at", String(40), nullable=False),
    Column("answered_batch", Integer, ForeignKey("batches.id"), nullable=True),
)


# Who may use the HTTP service: an owner's twins are those whose ``owner`` is its name.
# Only the sha256 of a token is kept; the token itself is shown once, at creation.
owners = Table(
    "owners",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
)

# Background work the service started (fits). No foreign key to twins: a job outlives a
# failed run of its child process, and deleting a twin deletes its jobs explicitly.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("twin_id", String(KEY_LENGTH), nullable=False, index=True),
    # The twin's uid when the job was asked for; NULL for jobs of schema versions before 6.
    Column("twin_uid", String(32), nullable=True),
    Column("owner", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("params", Text, nullable=False),  # JSON object
    Column("status", String(16), nullable=False),  # queued, running, done, failed, cancelled
    Column("runner", String(300), nullable=True),  # host:pid:instance of the server running it
    Column("created_at", String(40), nullable=False),
    Column("started_at", String(40), nullable=True),
    Column("finished_at", String(40), nullable=True),
    Column("result", Text, nullable=True),  # JSON object, when done
    Column("error", Text, nullable=True),  # what went wrong, when failed
)

# Logins of the web pages: the browser's cookie holds a random session id, the store only
# its sha256. Revoked at logout; deleting an owner deletes its sessions (the cascade).
sessions = Table(
    "sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),
    Column("owner", String(128), ForeignKey("owners.name", ondelete="CASCADE"), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False, index=True),
    Column("revoked_at", String(40), nullable=True),
)

Index("ix_jobs_twin_uid", jobs.c.twin_uid)
# The shared queue (status, runner) and the owners' turns (owner, started_at) of the
# job runners; added in schema 8.
JOBS_QUEUE_INDEX = Index("ix_jobs_status_runner", jobs.c.status, jobs.c.runner)
JOBS_OWNER_INDEX = Index("ix_jobs_owner_started", jobs.c.owner, jobs.c.started_at)

#: columns added after their table was created: (schema version, table, column). Their
#: indexes are made with them, and a store opened at an older version gets both.
ADDED_COLUMNS = (
    (5, twins, twins.c.data_batch),
    (6, twins, twins.c.uid),
    (6, jobs, jobs.c.twin_uid),
    (7, twins, twins.c.name),
    (7, population_models, population_models.c.owners),
    (10, model_versions, model_versions.c.live_band),
    (10, forecast_log, forecast_log.c.band_scale),
)

#: indexes added to tables that existed before: (schema version, index)
ADDED_INDEXES = ((8, JOBS_QUEUE_INDEX), (8, JOBS_OWNER_INDEX))

#: columns that hold a twin's key, which version 7 made longer (PostgreSQL enforces it)
KEY_COLUMNS = (
    (twins, twins.c.id),
    (channels, channels.c.twin_id),
    (decisions, decisions.c.twin_id),
    (quarantine, quarantine.c.twin_id),
    (ledger, ledger.c.twin_id),
    (model_versions, model_versions.c.twin_id),
    (clone_queries, clone_queries.c.twin_id),
    (jobs, jobs.c.twin_id),
    (monitor_policies, monitor_policies.c.twin_id),
)
