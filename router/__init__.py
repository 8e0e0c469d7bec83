"""The actor message kernel: actors, refs, bounded mailboxes, tell/ask, restarts, registry, timers.

It knows nothing about chats and depends on trio only.

- An actor is one trio task that owns its state and reads one mailbox, so there are no locks.
  Subclass `Actor`, then `await system.spawn(name, factory, mailbox_size=...)` inside
  `async with open_actor_system() as system`; you get an `ActorRef`, valid across restarts.
- Mailboxes are bounded trio memory channels, sized at spawn. The bound is backpressure: a
  producer faster than the actor waits in `tell` instead of growing memory without limit.
  Callers that must never block (e.g. a socket reader fanning out, a timer) use `tell_nowait`,
  which raises `MailboxFull` and lets them decide what to drop.
- `ask(make)` builds the message around a fresh one-shot `Reply` and waits for it; bound the wait
  with `trio.fail_after`. The kernel finds a message's reply slot by convention: the attribute
  `reply` holding a `Reply`, e.g. ``@dataclass(frozen=True, slots=True) class GetLoad: reply:
  Reply[int]``. A handler may keep the slot and answer it later, from another message.
- Errors while handling an ask go to the asker: a `Refused` as it is (the actor carries on), any
  other exception as `HandlerCrashed` (and the actor crashes). On a tell, `Refused` is logged on
  the "router" logger and dropped; anything else crashes the actor.
- A crashed actor is restarted one-for-one: a fresh instance from the factory, `on_start` again
  (reload state from the store), the same mailbox and ref, after `RestartPolicy`'s backoff
  (doubling with each crash within the window). More than `RestartPolicy.max_restarts` crashes
  within `within_seconds` gives up: `on_give_up(name, error)` (the parent) decides, returning
  None to stop the actor or a delay after which it starts afresh with the same mailbox and ref;
  without an `on_give_up`, `ActorGaveUp` is raised out of `open_actor_system`.
- A `BatchActor` gets every message waiting in its mailbox (up to `max_batch`) in one
  `handle_batch` call, so it can make one durable write for all of them before answering.
- A stopped actor (`system.stop`, `context.stop`, system exit) accepts nothing more, runs
  `on_stop`, and fails every ask left in its mailbox with `ActorDead`; its timers are cancelled.
- `context.send_after` sends the actor a message through its own mailbox on the trio clock, so
  tests drive timers with trio's `MockClock`.
"""

from router._actor import Actor as Actor
from router._actor import ActorContext as ActorContext
from router._actor import ActorRef as ActorRef
from router._actor import BatchActor as BatchActor
from router._actor import RestartPolicy as RestartPolicy
from router._errors import ActorDead as ActorDead
from router._errors import ActorGaveUp as ActorGaveUp
from router._errors import HandlerCrashed as HandlerCrashed
from router._errors import MailboxFull as MailboxFull
from router._errors import Refused as Refused
from router._errors import RouterError as RouterError
from router._reply import Reply as Reply
from router._system import ActorInfo as ActorInfo
from router._system import ActorSystem as ActorSystem
from router._system import open_actor_system as open_actor_system
from router._timer import Timer as Timer
