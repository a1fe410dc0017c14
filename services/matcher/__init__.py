"""matcher: crosses each published message with every volunteer's opt-in
interest profile and suggests it where it fits.

- ``domain``: the pure rules — ``index`` (profiles, targeting, audience,
  score, partitions), ``queue`` (pacing: daily cap, quiet hours) and
  ``planner`` (the decisions, event by event, and the rebuild from FEED);
- ``usecases``: one module per thing the matcher does (index a profile,
  match a message, withdraw one, rebuild at start, a release pass);
- ``store``: the state they change, in memory, rebuilt from the streams;
- ``outbound``: everything it publishes (suggestions, the watermark);
- ``handlers``: the NATS subscriptions and the release timer, calling use
  cases; ``app``: the bootstrap wiring them (docs/architecture.md).

Scaling out: replica i of N (``MAILLAGE_MATCHER_PARTITION``/``_PARTITIONS``)
owns the volunteers with sha256(volunteer id) mod N = i, indexes only their
profiles, and reads every published message through its own durable
consumer ``matcher-messages-<i>-of-<N>``: every message is matched once per
partition, every volunteer by exactly one replica.

When a replica dies, nobody else matches its volunteers: its durable consumer
keeps the messages published meanwhile (and redelivers the one it was
handling). When it comes back — same partition number: a Kubernetes
StatefulSet gives each pod a stable ordinal, exposed as an environment
variable through the ``apps.kubernetes.io/pod-index`` label — it replays the
profiles and the FEED stream, then resumes: late, never lost, never twice
(suggestion ids are stable; ``Nats-Msg-Id`` is the suggestion id). Changing
N repartitions every volunteer: stop all replicas, then start the N new
ones; their new durable consumers start from the beginning of FEED, where
messages older than the planner's horizon (``max_wait`` + 1 h, at least a
day) are skipped and newer ones are matched again under the same suggestion
ids (JetStream drops those it stored in the last two minutes; contacts and
feed keep one per id).
"""
