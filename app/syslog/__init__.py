"""Syslog listeners: the protocol routers, firewalls, NAS boxes, Docker's syslog driver and every rsyslog or
syslog-ng relay speak. Each is off until its port is set (SYSLOG_*_PORT); they run in `python -m app`'s
workers (started from the app's lifespan, which the Lambda never runs).

    framing.py     RFC 6587 on a stream: octet counting or LF/NUL-terminated, per message; SYSLOG_MAX_MESSAGE
    parse.py       RFC 5424 and RFC 3164/BSD (detected per message) -> Message
    mapping.py     Message -> an entry of our schema (level, service, created_at, metadata)
    sink.py        entries -> rows -> the shared writer (group commit), counters, what to do when it cannot
    tcp.py         TCP listener; its connection is also TLS's
    tls.py         RFC 5425: TLS, optionally requiring client certificates
    udp.py         UDP listener (drops counted)
    relp.py        RELP (rsyslog's omrelp): acknowledged once committed
    listeners.py   start and stop them all

Every worker process listens on every configured port (SO_REUSEPORT) rather than one worker owning them:
the kernel spreads connections and datagrams over the workers, so syslog gets every core as HTTP does and
no worker is a bottleneck or a single point of failure, with no coordination between workers to decide
(or re-decide, when one dies) who owns a port. The cost: SO_REUSEPORT also lets another process of the
same user bind the port; deploy one server per host and port, as for HTTP.
"""
