-- 006: Agora Conversational AI webhooks (POST /v1/agora/events). Agora may
-- deliver a notice more than once; its noticeId is recorded by the statement
-- that acts on it, so a repeat finds it here and changes nothing.

CREATE TABLE agora_notices (
    notice_id    text PRIMARY KEY,
    event_type   integer NOT NULL,
    conversation bigint REFERENCES conversations (id) ON DELETE SET NULL,  -- the conversation it acted on, when one matched
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agora_notices_received ON agora_notices (received_at);
