"""The domain: assignment, agents, conversations and the activity log, as actors on the kernel."""

from actors.system import System as System
from actors.system import SystemConfig as SystemConfig
from actors.system import open_system as open_system
