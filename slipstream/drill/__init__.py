"""Drills of the closed loop: a stream with a known drift through the whole platform at accelerated event time, and
a report of what the loop saw and did (`slipstream drill`)."""
