"""Crash/restart chaos: real websocket clients talk through a real server that is SIGKILLed.

`run_chaos(plan, workdir)` starts `switchboard serve` as a subprocess on a port of its own (so a
restart keeps the URL), creates agents through the admin API, and drives `plan.chats` chats of
`plan.messages` messages each (half from the customer, half from whichever agent has the chat)
from trio-websocket clients. It kills the server with SIGKILL `plan.kills` times, each after a
drawn number of acknowledged messages (drawn from `plan.seed`), and starts it again on the same
store. Clients do what a real client does: reconnect with bounded backoff, resend every
unacknowledged message with the same clientMsgId, and `resume` each chat from the last seq they
showed (reloading over REST when the gap is too large). Optional churn (`plan.churn`) has agents
step away and back, and an admin reassign chats and change max loads, at drawn moments.

When every message is acknowledged, each client catches up with a final resume, the assignment
actor's state is read (GET /admin/system), the server is killed, and tools/chaos_check.py checks
the evidence against the store: nothing acknowledged lost or stored twice, seqs 1, 2, 3, ...,
every client showed every message in order, no chat with two agents, no agent over max load, and
the assignment actor agreeing with the store and the log.

From the command line, with bigger numbers:

    python -m tools.chaos --chats 200 --messages 1000 --kills 50 --churn 100 --seed 7
"""

from tools._server import free_port as free_port
from tools.chaos._drive import run_chaos as run_chaos
from tools.chaos._plan import ChaosError as ChaosError
from tools.chaos._plan import ChaosPlan as ChaosPlan
from tools.chaos._plan import ChaosReport as ChaosReport
from tools.chaos._server import ServerProcess as ServerProcess
