-- 004: the Signaling (RTM) messages send_rtm_message sent, keyed like every
-- other write, so that the engine retrying a turn does not message the
-- caller twice. A row is claimed before the message goes out and removed if
-- it could not be sent, so a retry after a failure sends it after all.

CREATE TABLE signaling_messages (
    id              bigserial PRIMARY KEY,
    user_id         text NOT NULL,
    message         text NOT NULL,
    idempotency_key text UNIQUE,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
