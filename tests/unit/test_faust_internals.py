"""The corrections to Faust's consumer: installed on import of the worker, refused on unknown versions."""

from __future__ import annotations

from typing import Any

import pytest

from streams import faust_internals

pytestmark = pytest.mark.unit


def _worker_app() -> Any:
    """A worker's Faust app (built, never started): building it installs the corrections."""
    from core.settings import Settings
    from streams import build_worker

    return build_worker(Settings(broker_url="kafka://127.0.0.1:1", redis_url="redis://127.0.0.1:1")).app


def test_an_unknown_faust_version_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_internals.faust, "__version__", "0.16.0")
    with pytest.raises(faust_internals.PatchVersionError, match=r"faust-streaming 0\.16\.0 .* extend WRITTEN_FOR"):
        faust_internals.install(100)


def test_the_fetcher_never_sees_a_read_offset_but_seeks_and_the_lag_gauge_do() -> None:
    app = _worker_app()

    offsets = app.consumer._read_offset
    offsets["tp"] = 41
    assert offsets["tp"] is None  # what the fetcher loop reads: nothing is dropped as already read
    assert offsets.get("tp") == 41 and list(offsets.keys()) == ["tp"]
    offsets.pop("tp")
    assert offsets.get("tp") is None


def test_an_ack_during_a_rebalance_is_not_recorded() -> None:
    app = _worker_app()

    class Message:
        acked = False
        generation_id = app.consumer_generation_id
        tp = topic = offset = None

    was_active = app.flow_control.is_active()
    app.flow_control.suspend()  # what Faust does when partitions are being revoked
    try:
        message = Message()
        assert app.consumer.ack(message) is False  # type: ignore[arg-type]
        assert message.acked  # nothing waits for it any more, but its offset is not committable
        assert not any(app.consumer._acked.values())
    finally:
        if was_active:
            app.flow_control.resume()


async def test_resuming_flow_keeps_what_the_stream_queues_hold() -> None:
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    _worker_app()  # installs the corrections

    flow = FlowControlEvent(initially_suspended=False)
    queue: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    queue.put_nowait("fetched just before the end of a recovery")
    flow.suspend()
    flow.resume()
    assert flow.is_active() and queue.qsize() == 1  # still there: it is processed, not thrown away
    flow.clear()  # what Faust does on purpose when partitions are revoked
    assert queue.qsize() == 0
