"""Names of the environment variables a twin service reads, in one place. The platform sets
them (the operator on Kubernetes, ``ktwin up`` for child processes) under the same names the
Rust SDK reads."""

#: HTTP port to listen on (Knative's contract); default 8080.
PORT = "PORT"
#: Broker ingress URL emitted events are posted to.
BROKER = "KTWIN_BROKER"
#: Event store root URL (latest states).
EVENT_STORE = "KTWIN_EVENT_STORE"
#: Graph service URL (``…/api/v1/twin-graph``).
GRAPH_URL = "KTWIN_GRAPH_URL"
#: A whole twin graph as JSON, used instead of the graph service.
GRAPH = "KTWIN_GRAPH"
#: ``true`` (default): one emitted event goes back in the HTTP reply.
REPLY = "KTWIN_REPLY"
#: Events handled at once (default 64); more wait.
MAX_CONCURRENCY = "KTWIN_MAX_CONCURRENCY"
#: Seconds a latest state read from the event store may be reused (Python SDK; default 0).
STATE_CACHE_TTL = "KTWIN_STATE_CACHE_TTL"
#: Bearer token sent to the broker, the event store and the graph service (``ktwin up`` gives
#: each service process one; on a cluster the in-cluster services need none).
TOKEN = "KTWIN_TOKEN"
