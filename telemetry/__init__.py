"""Operations: structured logs, Prometheus metrics, and the process's pauses (GC, loop lag).

A leaf package (the standard library, trio and prometheus-client only), so every layer above
the kernel can report through it with one call per event (`telemetry._events`).
"""

from telemetry._events import UNMATCHED_ROUTE as UNMATCHED_ROUTE
from telemetry._events import actor_restarted as actor_restarted
from telemetry._events import connection_closed as connection_closed
from telemetry._events import connection_opened as connection_opened
from telemetry._events import http_request as http_request
from telemetry._events import limit_hit as limit_hit
from telemetry._events import message_acknowledged as message_acknowledged
from telemetry._events import message_delivered as message_delivered
from telemetry._events import message_stored as message_stored
from telemetry._events import routing_decision as routing_decision
from telemetry._events import store_call as store_call
from telemetry._events import store_failed as store_failed
from telemetry._events import store_writer_ended as store_writer_ended
from telemetry._events import watch_runtime as watch_runtime
from telemetry._logs import LogFormat as LogFormat
from telemetry._logs import LogLevel as LogLevel
from telemetry._logs import configure_logging as configure_logging
from telemetry._logs import event as event
from telemetry._logs import redact_url as redact_url
from telemetry._logs import scrub as scrub
from telemetry._metrics import READY as READY
from telemetry._metrics import exposition as exposition
from telemetry._metrics import set_routing_state as set_routing_state
from telemetry._runtime import GcPauses as GcPauses
from telemetry._runtime import watch_loop_lag as watch_loop_lag
