"""Explicit topic creation: auto-created topics get the broker's default partition count, not ours."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from core.kinds import KINDS
from core.settings import Settings

__all__ = [
    "CALLER_TABLE",
    "SUBSCRIBER_TABLE",
    "bootstrap",
    "changelog_topic",
    "create_topics",
    "ensure_topics",
    "internal_topic",
    "topic_names",
]

# The feature tables (their changelogs are Faust's, named by ``changelog_topic``).
CALLER_TABLE = "caller-state"  # calling numbers and payee accounts (under ``payee:<account>``)
SUBSCRIBER_TABLE = "subscriber-state"


def bootstrap(broker_url: str) -> str:
    """``kafka://host:port`` (Faust style) to ``host:port`` (aiokafka style)."""
    return broker_url.split("://", 1)[-1]


def internal_topic(settings: Settings, name: str) -> str:
    """An app-private topic's name: two apps (say, a shadow deployment) must not read each other's hops."""
    return f"{settings.app_id}.{name}"


def changelog_topic(settings: Settings, table: str) -> str:
    """The changelog topic Faust gives a table of this app (``{app id}-{table}-changelog``)."""
    return f"{settings.app_id}-{table}-changelog"


def topic_names(settings: Settings) -> list[str]:
    """Every topic the service reads or writes, apart from Faust's own changelogs."""
    inputs = dict.fromkeys(getattr(settings, kind.topic_setting) for kind in KINDS.values())
    return [
        *inputs,
        internal_topic(settings, settings.caller_calls_topic),
        internal_topic(settings, settings.enriched_calls_topic),
        internal_topic(settings, "features"),
        internal_topic(settings, settings.pending_alerts_topic),
        settings.dead_letter_topic,
        settings.tasks_topic,
        settings.labels_topic,
        settings.holds_topic,
    ]


async def ensure_topics(settings: Settings) -> None:
    """Create the service's topics with ``settings.partitions`` partitions if they do not exist."""
    assert settings.broker_url, "broker_url must be set"
    await create_topics(bootstrap(settings.broker_url), topic_names(settings), settings.partitions)


async def create_topics(server: str, names: list[str], partitions: int) -> None:
    """Create those of ``names`` that do not exist yet, with ``partitions`` partitions each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=server)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
