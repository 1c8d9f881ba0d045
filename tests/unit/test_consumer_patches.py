"""The corrections to Faust's consumer: installed on import of the worker, refused on unknown versions."""

from __future__ import annotations

import pytest

from streams import consumer_patches

pytestmark = pytest.mark.unit


def test_an_unknown_faust_version_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_patches.faust, "__version__", "0.16.0")
    with pytest.raises(consumer_patches.PatchVersionError, match=r"faust-streaming 0\.16\.0 .* extend WRITTEN_FOR"):
        consumer_patches.install(100)


def test_the_fetcher_never_sees_a_read_offset_but_seeks_and_the_lag_gauge_do() -> None:
    import streams.app  # noqa: F401  (installs the patches and builds the app's consumer)
    from streams.app import app

    offsets = app.consumer._read_offset
    offsets["tp"] = 41
    assert offsets["tp"] is None  # what the fetcher loop reads: nothing is dropped as already read
    assert offsets.get("tp") == 41 and list(offsets.keys()) == ["tp"]
    offsets.pop("tp")
    assert offsets.get("tp") is None


def test_an_ack_during_a_rebalance_is_not_recorded() -> None:
    import streams.app  # noqa: F401
    from streams.app import app

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

    import streams.app  # noqa: F401

    flow = FlowControlEvent(initially_suspended=False)
    queue: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    queue.put_nowait("fetched just before the end of a recovery")
    flow.suspend()
    flow.resume()
    assert flow.is_active() and queue.qsize() == 1  # still there: it is processed, not thrown away
    flow.clear()  # what Faust does on purpose when partitions are revoked
    assert queue.qsize() == 0
