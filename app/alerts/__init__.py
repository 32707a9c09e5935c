"""Alerts: saved GET /logs queries with a threshold that notify when the logs say something is wrong.

rules.py      what a rule is (POST /alerts's body), how it is checked, its rows in PostgreSQL
evaluate.py   the evaluation pass: count each rule's window, move its state, once across processes
notify.py     delivery: JSON POST to http(s), apprise for chat and mail; retried, in the background
link.py       the web view's link to a rule's logs
"""
