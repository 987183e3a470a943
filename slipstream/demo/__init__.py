"""`slipstream demo`, the main job end to end: platform, data, a trained champion, a warm online store, the feature
engine and both scorer front ends as child processes, and live card traffic scored as it arrives.

Timeline, in simulated time (the Fraud Detection Handbook data set, 2018-04-01 .. 2018-09-30)::

    train 07-25..07-31 | gap | validate 08-08..08-14 | live from L (08-15 <= L < 08-22) ...
                     warm-up [L - 37 d, L) ----------------------------^

``L`` falls on today's weekday and time of day; every event is shifted by the whole number of weeks from ``L`` to
now, so the night and weekend features are unchanged and the live stream starts *now*. The warm-up runs the 37
days before ``L`` (the longest window's reach: terminal counts over 30 days, 7 days back) through the engine, so
every window is full when live traffic starts. Live transactions go out at ``rate`` per second, far faster than the
simulated card holders pay (~0.11/s), so event time runs ahead of the wall clock by the speed-up shown; each label
follows on the labels topic when its time (7 simulated days after its transaction) comes.

Each run has its own namespace (topics ``demo-<run>.*``, Feast project ``demo_<run>`` in Redis), deleted when the
run ends: replaying the same simulated events into topics or entity state that already hold them would make them
duplicates (or late). A run killed before it could clean up is swept by the next one.
"""

from slipstream.demo.base import DemoOptions, DemoReport, DemoUI
from slipstream.demo.exceptions import DemoError
from slipstream.demo.run import DemoRun
from slipstream.demo.stats import LiveStats

__all__ = ["DemoError", "DemoOptions", "DemoReport", "DemoRun", "DemoUI", "LiveStats"]
