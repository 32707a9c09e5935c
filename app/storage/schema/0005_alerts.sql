-- Alert rules (app/alerts/): a saved GET /logs query, a threshold over a window, where to notify, and the
-- rule's state. The state lives here, beside the rule, so that restarts and several servers agree on it:
-- an evaluator moves a rule from one state to another with `UPDATE … WHERE state = <the state it read>`,
-- and only the evaluator whose UPDATE returned the row sends the notification.
CREATE TABLE alert_rules (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              TEXT NOT NULL,
    -- The filters as POST /alerts took them: {"service": "checkout", "level": ["ERROR", "FATAL"], …}.
    query             JSONB NOT NULL,
    threshold         INTEGER NOT NULL CHECK (threshold >= 1),
    window_seconds    INTEGER NOT NULL CHECK (window_seconds >= 1),
    notify            TEXT[] NOT NULL,
    -- 0: one notification per firing, never repeated.
    renotify_seconds  INTEGER NOT NULL CHECK (renotify_seconds >= 0),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    state             TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'firing')),
    last_count        BIGINT,
    last_evaluated_at TIMESTAMPTZ,
    last_notified_at  TIMESTAMPTZ
);
