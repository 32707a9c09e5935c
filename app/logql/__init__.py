"""LogQL, the query language of Grafana's Loki data source: parse (lexer, parser -> ast), then evaluate
(engine) with what can be pushed down rendered as SQL conditions (plan)."""
