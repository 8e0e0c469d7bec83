"""Cluster mode: several Switchboard nodes on one MongoDB, coordinated through the bus.

`open_cluster(store, bus_url, ...)` joins this process to the cluster and gives the `System` the
API uses (a `ClusterSystem`). How the nodes share the work is in `cluster/_node.py`.
"""

from cluster._node import ARBITER_LEASE as ARBITER_LEASE
from cluster._node import ClusterConfig as ClusterConfig
from cluster._node import default_node_id as default_node_id
from cluster._open import open_cluster as open_cluster
from cluster._system import ClusterSystem as ClusterSystem
from cluster._system import ClusterView as ClusterView
from cluster._system import NodeView as NodeView
