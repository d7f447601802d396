"""Key prefixes, limits and durations in one place. Durations carry their unit in the name."""

KEY_PREFIX = "sb"
SESSION_INDEX_KEY = f"{KEY_PREFIX}:sessions"  # sorted set: session id -> last activity (epoch seconds)

IDLE_TTL_S = 7 * 86_400  # 7 days without a turn and a session is gone
DEDUPE_TTL_S = 86_400  # 1 day: how long an answered delivery id is remembered
LEASE_TTL_S = 10.0  # renewed every third of it while a turn runs: a crashed holder blocks its session 10 s at most
LEASE_WAIT_S = 150.0  # how long a turn waits for a busy session before giving up
# How long a turn waits for its message's embedding (started before the model call) before going on without
# recall: a slow embedding endpoint must not hold the reply back for its whole timeout and retries.
EMBEDDING_WAIT_S = 5.0
LEASE_RETRY_MIN_S = 0.005  # 5 ms first back-off when another process holds the lease
LEASE_RETRY_MAX_S = 0.25  # 250 ms back-off ceiling
SWEEP_INTERVAL_S = 300.0  # 5 minutes between expiry sweeps of the embedded stores

MAX_MESSAGES = 200  # messages kept per session
WINDOW_MESSAGES = 20  # messages shown to the model by the window strategy
MAX_MESSAGE_CHARS = 8_000  # longer user messages are cut, with a visible note
MAX_ID_CHARS = 512  # longest platform id accepted in a session key component

REDIS_MAX_CONNECTIONS = 64  # per process; turns beyond it wait for a free connection
REDIS_POOL_WAIT_S = 10.0  # 10 s a turn waits for a free Redis connection before "memory unavailable"
# After a Redis restart every pooled socket is dead: a command is sent again on a new connection, 50 ms after the
# first failure, doubling up to 1 s, 8 times (about 5 s in all), before the store counts as unavailable.
REDIS_RETRIES = 8
REDIS_RETRY_BASE_S = 0.05
REDIS_RETRY_CAP_S = 1.0
REDIS_CLUSTER_NODE_CONNECTIONS = 1_000  # per cluster node; redis-py's cluster client refuses, not waits, past it

INBOX_VISIBILITY_S = 10.0  # an entry whose worker stopped heart-beating this long is taken by another worker
INBOX_SHARDS = 4  # Redis: streams the inbox is spread over (each session always lands in the same one)
INBOX_MAX_ATTEMPTS = 5  # an entry handed out this many times without finishing is set aside for an operator
INBOX_POLL_S = 0.2  # SQLite: how often a worker looks for entries another process recorded
INBOX_CONCURRENCY = 64  # entries one worker answers at once
