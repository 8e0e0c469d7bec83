"""The domain: assignment, agents, conversations and the activity log, as actors on the kernel."""

from actors.assignment import AgentView as AgentView
from actors.assignment import CoreSnapshot as CoreSnapshot
from actors.assignment import QueueEntry as QueueEntry
from actors.events import CLOSE_SIGNED_OUT as CLOSE_SIGNED_OUT
from actors.events import CLOSE_SLOW_READER as CLOSE_SLOW_READER
from actors.events import AgentStatusEvent as AgentStatusEvent
from actors.events import ChatAssigned as ChatAssigned
from actors.events import ChatStatusEvent as ChatStatusEvent
from actors.events import ChatUnassigned as ChatUnassigned
from actors.events import Event as Event
from actors.events import MessageAdded as MessageAdded
from actors.events import QueuePosition as QueuePosition
from actors.events import ReadEvent as ReadEvent
from actors.events import Session as Session
from actors.events import TypingEvent as TypingEvent
from actors.messages import History as History
from actors.messages import OpenedChat as OpenedChat
from actors.messages import Sent as Sent
from actors.messages import Speaker as Speaker
from actors.messages import SystemSnapshot as SystemSnapshot
from actors.presence import Route as Route
from actors.system import System as System
from actors.system import SystemConfig as SystemConfig
from actors.system import open_system as open_system
