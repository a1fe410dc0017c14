"""matcher: crosses each published message with every volunteer's opt-in
interest profile and suggests it where it fits.

- ``domain``: the index (profiles, inverted by interest, region and locale),
  targeting, audience estimate, score = audience × 2^(priority − 1), and the
  partition a volunteer belongs to;
- ``queue``: pacing — a daily cap per volunteer and quiet hours, in the
  campaign's time zone; what waits is released by priority, then score;
- ``planner``: the decisions, event by event, and the rebuild of the queues
  from the FEED stream when the process starts (its module doc says what
  survives a restart and what does not);
- ``handlers``/``app``: NATS and HTTP wiring.

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
