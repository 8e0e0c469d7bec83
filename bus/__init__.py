"""The coordination bus of cluster mode: Valkey or Redis through coredis (on Trio via anyio).

It knows nothing of chats or actors: channels, leases and membership with TTLs, and presence
counts per node. What Switchboard does with them is in actors/cluster*.py.
"""

from bus._client import ACCEPTED_FORMS as ACCEPTED_FORMS
from bus._client import Bus as Bus
from bus._client import BusError as BusError
from bus._client import BusUnavailable as BusUnavailable
from bus._client import Delivery as Delivery
from bus._client import Published as Published
from bus._client import Resubscribed as Resubscribed
from bus._client import check_bus_url as check_bus_url
from bus._client import key as key
from bus._client import open_bus as open_bus
from bus._lease import Lease as Lease
from bus._nodes import Membership as Membership
