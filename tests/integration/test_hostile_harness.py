"""The containment harness itself: it must see a stall when there is one, or
every hostile test built on it proves nothing."""
import signal
import time

import pytest

from hostile import Watchdog


@pytest.mark.hub_only
def test_watchdog_sees_a_stalled_hub_and_passes_a_healthy_one(server):
    with Watchdog(server) as healthy:
        time.sleep(0.2)
    healthy.check(max_stall=0.5)

    with Watchdog(server) as wd:
        time.sleep(0.05)
        server.proc.send_signal(signal.SIGSTOP)   # the hub's loop stops answering
        time.sleep(0.4)
        server.proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    assert wd.max_latency >= 0.35, wd.summary()
    with pytest.raises(AssertionError, match="PING stalled"):
        wd.check(max_stall=0.3)
    with pytest.raises(AssertionError, match="RSS"):
        wd.check(max_stall=10, max_rss=1)
