-- 001: the support desk. Customers and their orders, tickets and the notes and
-- calls on them, escalations, a log of the changes the agent made, and agent
-- events. `switchboard migrate` runs this file once, in one transaction.
--
-- {{tickets_table}} and {{interactions_table}} become the quoted
-- SUPPORT_TICKETS_TABLE and SUPPORT_INTERACTIONS_TABLE at run time. Indexes
-- and constraints on those two tables are left for Postgres to name, so their
-- names follow whatever the tables are called.
--
-- Every row a tool writes carries an optional idempotency_key (unique): a
-- retried tool call finds its first write instead of making a second one.

CREATE TABLE customers (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    phone       text,
    tier        text NOT NULL DEFAULT 'standard' CHECK (tier IN ('standard', 'plus', 'vip')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One customer per address whatever its case; look customers up by lower(email).
CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));

CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    order_number    text NOT NULL UNIQUE,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    status          text NOT NULL
                    CHECK (status IN ('pending', 'paid', 'processing', 'shipped', 'delivered', 'cancelled', 'returned', 'refunded')),
    total_cents     integer NOT NULL CHECK (total_cents >= 0),
    currency        char(3) NOT NULL DEFAULT 'USD',
    items           jsonb NOT NULL DEFAULT '[]',
    carrier         text,
    tracking_number text,
    placed_at       timestamptz NOT NULL DEFAULT now(),
    shipped_at      timestamptz,
    delivered_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- "My recent orders": a customer's orders, newest first.
CREATE INDEX orders_customer_placed_idx ON orders (customer_id, placed_at DESC);

CREATE TABLE {{tickets_table}} (
    id              bigserial PRIMARY KEY,
    customer_id     bigint REFERENCES customers (id),
    order_id        bigint REFERENCES orders (id),
    subject         text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    description     text NOT NULL DEFAULT '' CHECK (char_length(description) <= 4000),
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'pending', 'in_progress', 'escalated', 'resolved', 'closed')),
    priority        text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    channel         text NOT NULL DEFAULT 'voice',
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {{tickets_table}} (customer_id);
CREATE INDEX ON {{tickets_table}} (order_id);
CREATE INDEX ON {{tickets_table}} (status, priority);

CREATE TABLE {{interactions_table}} (
    id              bigserial PRIMARY KEY,
    ticket_id       bigint REFERENCES {{tickets_table}} (id) ON DELETE CASCADE,
    customer_id     bigint REFERENCES customers (id),
    kind            text NOT NULL CHECK (kind IN ('note', 'call', 'email', 'chat', 'status_change', 'escalation')),
    summary         text NOT NULL CHECK (char_length(summary) BETWEEN 1 AND 4000),
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- A ticket's history, newest first.
CREATE INDEX ON {{interactions_table}} (ticket_id, created_at DESC);
CREATE INDEX ON {{interactions_table}} (customer_id);

CREATE TABLE escalations (
    id              bigserial PRIMARY KEY,
    ticket_id       bigint NOT NULL REFERENCES {{tickets_table}} (id) ON DELETE CASCADE,
    reason          text NOT NULL,
    priority        text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    escalated_to    text,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    email_sent_at   timestamptz,
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escalations_ticket_idx ON escalations (ticket_id);

-- What the agent changed, in words, for the humans who read it later.
CREATE TABLE change_log (
    id              bigserial PRIMARY KEY,
    entity_type     text NOT NULL,
    entity_id       text NOT NULL,
    change_type     text NOT NULL,
    description     text NOT NULL,
    actor           text NOT NULL DEFAULT 'agent',
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_log_entity_idx ON change_log (entity_type, entity_id, created_at DESC);

CREATE TABLE agent_events (
    id              bigserial PRIMARY KEY,
    event_type      text NOT NULL,
    agent_id        text,
    channel         text,
    turn_id         text,
    payload         jsonb NOT NULL DEFAULT '{}',
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_events_type_idx ON agent_events (event_type, created_at DESC);
