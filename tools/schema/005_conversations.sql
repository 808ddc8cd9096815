-- 005: conversation memory and the event log. A conversation is named by a
-- keyed digest (`key`) of the inbound key that owns it (`owner`, itself a
-- keyed digest: the key never reaches the database) and of either the
-- client's conversation_id or the voice engine's names for the call, so one
-- inbound key can neither read nor write another's conversation by guessing
-- its id. Every turn is written once, by one statement, after it is done.

CREATE TABLE conversations (
    id           bigserial PRIMARY KEY,
    key          text NOT NULL UNIQUE,   -- hex digest of (owner, client id or engine identity)
    owner        text NOT NULL,          -- hex digest of the inbound key
    client_id    text,                   -- the client's conversation_id, when it named one
    identity     text,                   -- the engine's names for the call ("app=..;channel=..;user=..;agent=..")
    customer_id  bigint,                 -- the caller, when llm.params bound one
    email        text,
    agent        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_at      timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz,            -- set after SESSION_IDLE_S of silence; a later turn opens it again
    summary      text
);
-- returning-caller memory: one caller's closed calls, newest first
CREATE INDEX conversations_customer ON conversations (owner, customer_id, closed_at DESC) WHERE customer_id IS NOT NULL;
CREATE INDEX conversations_email ON conversations (owner, email, closed_at DESC) WHERE email IS NOT NULL;
-- the idle close and the retention purge
CREATE INDEX conversations_open_last ON conversations (last_at) WHERE closed_at IS NULL;
CREATE INDEX conversations_last ON conversations (last_at);

-- seq is global and increasing: a conversation's messages read in seq order,
-- and two workers writing turns of one conversation never contend for a number.
CREATE TABLE messages (
    seq           bigserial PRIMARY KEY,
    conversation  bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    turn_key      text NOT NULL,         -- the turn's digest: a repeated turn has the same one
    part          integer NOT NULL,      -- the message's place in its turn
    role          text NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content       text,
    tool_calls    jsonb,
    tool_call_id  text,
    agent         text,
    turn_id       text,                  -- the engine's turn_id, when it sent one
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation, turn_key, part)
);
CREATE INDEX messages_conversation ON messages (conversation, seq);

CREATE TABLE conversation_events (
    seq           bigserial PRIMARY KEY,
    conversation  bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    data          jsonb NOT NULL DEFAULT '{}',
    at            timestamptz NOT NULL
);
CREATE INDEX conversation_events_conversation ON conversation_events (conversation, at, seq);
