"""Rare full garbage collections: the cyclic collector seldom stops a busy process for long.

CPython's collector stops every thread while it runs. Its young generations are small by
construction (a collection examines at most a few thousand objects: a millisecond or two), but a
full collection examines every object it tracks, and with a few hundred connections that is a
few hundred thousand objects and 50 to 200 ms during which no message moves (README,
Performance). CPython runs one whenever the old generation has grown by a quarter since the
last; in a server whose old generation is mostly live connections, actors and caches, nearly
all of that work finds nothing. So:

- what start-up made (modules, the app, its schemas) is frozen at once (`gc.freeze`): it lives
  as long as the process and no collection ever examines it again;
- automatic full collections are off; every `CHECK_SECONDS` the policy looks at the heap
  (`sys.getallocatedblocks`, which costs nothing, where counting the old generation would walk
  it) and runs a full collection itself once the heap has grown `GROWTH_FACTOR` times over
  since the last one: a quarter as often as CPython would, for garbage bounded the same way (at
  most what the heap held live).

Young and middle collections take as long as the objects they examine, and most are live: the
await chains of tasks parked since the last collection (a coroutine per frame, a
`WaitTaskRescheduled`, a `CancelScope`, closures) and what a message in flight holds. CPython
counts toward its young threshold the tracked objects allocated *less those freed in any
generation*, so where old chains die as fast as new ones are made (a server under steady load)
the count barely moves, and the young generation held up to 10,000 objects when the threshold of
700 was reached; a middle collection, over the survivors of 6 of those, examined up to 24,000 (5
to 8 ms of CPU in `loadsim steady` at 200 msg/s). A young threshold of `YOUNG` and a middle
collection every `MIDDLE` young ones examine at most about 13,000 (2.4 to 3.8 ms of CPU on a
busy machine), for a little more of the collector's CPU in all (under 3 ms a second at 200
msg/s); a young threshold of 200 halves the longest again but costs 1.7 times the CPU.

One policy per process: a second caller (another server in the same test process) shares the
first's, and the last to leave restores the collector.
"""

from __future__ import annotations

import gc
import sys
from typing import NoReturn

import trio

CHECK_SECONDS = 0.5
"""How often the heap's size is looked at."""
GROWTH_FACTOR = 2.0
"""Growth of the heap since the last full collection that calls for the next one."""
YOUNG = 300
"""Tracked allocations, net of deallocations, that call for a young collection; CPython's is 700.
It was 400 until a slower hour of the VM: then 400's longest collections took 6 to 25 ms in
`loadsim steady` at 200 msg/s and 300's at most 4 ms, for the same collector time in all, there
and in `bench socketio` (README, Performance)."""
MIDDLE = 3
"""Young (generation 0) collections between two middle (generation 1) ones; CPython's is 10."""
NEVER = 2**30
"""A gen2 threshold CPython never reaches: automatic full collections are off."""

_users = 0
_saved_thresholds = gc.get_threshold()


async def keep_collections_short(
    *,
    growth_factor: float = GROWTH_FACTOR,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run the policy until cancelled; started once start-up is done (`api.serve_asgi`)."""
    global _users, _saved_thresholds
    if _users == 0:
        _saved_thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG, MIDDLE, NEVER)
        gc.freeze()
    _users += 1
    try:
        task_status.started()
        after_last = sys.getallocatedblocks()
        while True:
            await trio.sleep(CHECK_SECONDS)
            if sys.getallocatedblocks() > growth_factor * after_last:
                gc.collect()
                after_last = sys.getallocatedblocks()
    finally:
        _users -= 1
        if _users == 0:
            gc.set_threshold(*_saved_thresholds)
            # What was frozen for the server goes back to the collector of the process that
            # stays (a test run serving many times).
            gc.unfreeze()
