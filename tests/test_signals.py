"""SIGINT and SIGTERM in an ``interrupts_raise`` block: ``KeyboardInterrupt``, also
where a library caught the first one, and the handlers restored after."""

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightly_train._signals import interrupts_raise, raise_if_interrupted
from lightly_train.embedding.output import gather
from lightly_train.embedding.resume import WorkState
from tests.embedding.test_gather import batches, files


def swallowed(signum: int) -> None:
    """A signal whose ``KeyboardInterrupt`` a library catches and drops."""
    try:
        os.kill(os.getpid(), signum)
        signal.sigtimedwait([], 0)  # the handler runs before this returns
    except KeyboardInterrupt:
        pass


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_swallowed_interrupt_still_stops_the_loop(signum: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with interrupts_raise():
        raise_if_interrupted()  # nothing arrived yet
        with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name):
            os.kill(os.getpid(), signum)
            signal.sigtimedwait([], 0)
        swallowed(signum)
        with pytest.raises(KeyboardInterrupt, match=signal.Signals(signum).name):
            raise_if_interrupted()
    raise_if_interrupted()  # the block is over: forgotten
    assert {s: signal.getsignal(s) for s in before} == before


def test_gather_stops_at_the_next_batch_after_a_swallowed_interrupt(
    tmp_path: Path,
) -> None:
    seen = []

    def arriving() -> Iterator[dict[str, Any]]:
        for i, batch in enumerate(batches(5000, set())):
            seen.append(i)
            if i == 1:
                swallowed(signal.SIGINT)  # e.g. inside Ray's iterator
            yield batch

    with interrupts_raise(), pytest.raises(KeyboardInterrupt):
        gather(arriving(), files(5000), WorkState(tmp_path, 5000))
    assert seen == [0, 1]
