-- Demo data for Kettle & Co., a small shop selling kettles, grinders and other
-- kitchen things: 40 customers, 301 orders in every status, a few tickets with
-- their notes and calls, and one escalation. `switchboard migrate --seed` runs
-- it in one transaction after the migrations.
--
-- Running it again changes nothing: customers and orders have fixed ids and
-- ON CONFLICT DO NOTHING (the sequences are moved past them only forward);
-- tickets, interactions and escalations are keyed by their idempotency_key
-- and inserted only when missing, so no sequence value is spent on reruns.
-- Nothing here calls random(): every value follows from its row number.
-- Times are relative to now(), so a fresh demo has orders placed "yesterday".
--
-- The demo call: customer 1, Maya Patel (maya.patel@example.com), asks
-- "where is my order 4417?" - it is shipped, with a UPS tracking number.

INSERT INTO customers (id, name, email, phone, tier, created_at, updated_at)
SELECT v.id, v.name, v.email, v.phone, v.tier, now() - make_interval(days => 700 - v.id * 5), now() - make_interval(days => 700 - v.id * 5)
FROM (VALUES
    (1, 'Maya Patel', 'maya.patel@example.com', '+1-555-0101', 'plus'),
    (2, 'James O''Connor', 'james.oconnor@example.com', '+1-555-0102', 'standard'),
    (3, 'Sofia Rossi', 'sofia.rossi@example.com', '+1-555-0103', 'vip'),
    (4, 'Liam Nguyen', 'liam.nguyen@example.com', '+1-555-0104', 'standard'),
    (5, 'Aisha Bello', 'aisha.bello@example.com', '+1-555-0105', 'plus'),
    (6, 'Mateo García', 'mateo.garcia@example.com', '+1-555-0106', 'standard'),
    (7, 'Hannah Schmidt', 'hannah.schmidt@example.com', NULL, 'standard'),
    (8, 'Kenji Watanabe', 'kenji.watanabe@example.com', '+1-555-0108', 'vip'),
    (9, 'Olivia Brown', 'olivia.brown@example.com', '+1-555-0109', 'standard'),
    (10, 'Noah Williams', 'noah.williams@example.com', '+1-555-0110', 'standard'),
    (11, 'Fatima Khan', 'fatima.khan@example.com', '+1-555-0111', 'plus'),
    (12, 'Lucas Silva', 'lucas.silva@example.com', NULL, 'standard'),
    (13, 'Chloé Martin', 'chloe.martin@example.com', '+1-555-0113', 'standard'),
    (14, 'Ethan Cohen', 'ethan.cohen@example.com', '+1-555-0114', 'plus'),
    (15, 'Amara Okafor', 'amara.okafor@example.com', '+1-555-0115', 'standard'),
    (16, 'Daniel Kim', 'daniel.kim@example.com', '+1-555-0116', 'standard'),
    (17, 'Isabella López', 'isabella.lopez@example.com', '+1-555-0117', 'vip'),
    (18, 'Oliver Smith', 'oliver.smith@example.com', NULL, 'standard'),
    (19, 'Priya Sharma', 'priya.sharma@example.com', '+1-555-0119', 'plus'),
    (20, 'Samuel Mensah', 'samuel.mensah@example.com', '+1-555-0120', 'standard'),
    (21, 'Emma Johansson', 'emma.johansson@example.com', '+1-555-0121', 'standard'),
    (22, 'Benjamin Levi', 'benjamin.levi@example.com', '+1-555-0122', 'standard'),
    (23, 'Zoe Anderson', 'zoe.anderson@example.com', NULL, 'plus'),
    (24, 'Arjun Mehta', 'arjun.mehta@example.com', '+1-555-0124', 'standard'),
    (25, 'Grace Thompson', 'grace.thompson@example.com', '+1-555-0125', 'vip'),
    (26, 'Mohammed Haddad', 'mohammed.haddad@example.com', '+1-555-0126', 'standard'),
    (27, 'Lily Chen', 'lily.chen@example.com', '+1-555-0127', 'plus'),
    (28, 'Jack Wilson', 'jack.wilson@example.com', '+1-555-0128', 'standard'),
    (29, 'Ava Dubois', 'ava.dubois@example.com', NULL, 'standard'),
    (30, 'Ryan Murphy', 'ryan.murphy@example.com', '+1-555-0130', 'standard'),
    (31, 'Mei Lin Wong', 'meilin.wong@example.com', '+1-555-0131', 'plus'),
    (32, 'Carlos Mendoza', 'carlos.mendoza@example.com', '+1-555-0132', 'standard'),
    (33, 'Nora Lindqvist', 'nora.lindqvist@example.com', '+1-555-0133', 'standard'),
    (34, 'David Goldberg', 'david.goldberg@example.com', '+1-555-0134', 'vip'),
    (35, 'Yuki Tanaka', 'yuki.tanaka@example.com', '+1-555-0135', 'standard'),
    (36, 'Elena Popescu', 'elena.popescu@example.com', NULL, 'standard'),
    (37, 'Thomas Müller', 'thomas.muller@example.com', '+1-555-0137', 'plus'),
    (38, 'Leila Ahmadi', 'leila.ahmadi@example.com', '+1-555-0138', 'standard'),
    (39, 'Victor Santos', 'victor.santos@example.com', '+1-555-0139', 'standard'),
    (40, 'Ruby Clarke', 'ruby.clarke@example.com', '+1-555-0140', 'standard')
) AS v (id, name, email, phone, tier)
ORDER BY v.id
ON CONFLICT DO NOTHING;

-- Orders 1001-1300: order n was placed about 6n + n²/10 hours ago (the newest
-- yesterday, the oldest over a year ago), so the newest are still pending and
-- the oldest long delivered; every 17th was cancelled and a few were returned
-- or refunded. Customer (7n mod 40) + 1: each customer has 7 or 8 orders.
WITH products (idx, sku, name, price_cents) AS (VALUES
    (1, 'KC-KET-17', 'Aurora Electric Kettle 1.7 L', 7900),
    (2, 'KC-GNK-10', 'Gooseneck Pour-Over Kettle', 11900),
    (3, 'KC-SWK-25', 'Stovetop Whistling Kettle', 4900),
    (4, 'KC-GRD-40', 'Conical Burr Coffee Grinder', 14900),
    (5, 'KC-CBM-15', 'Cold Brew Maker 1.5 L', 3900),
    (6, 'KC-MFR-05', 'Milk Frother', 5900),
    (7, 'KC-TST-04', 'Four-Slice Toaster', 8900),
    (8, 'KC-TIS-03', 'Loose-Leaf Tea Infuser Set', 2400),
    (9, 'KC-DSC-12', 'Descaling Tablets (12 pack)', 1200),
    (10, 'KC-FLT-02', 'Replacement Kettle Filter', 900)
), g AS (
    SELECT n,
           (n * 7) % 40 + 1 AS customer_id,
           now() - make_interval(hours => 6 * n + n * n / 10) AS placed_at,
           CASE
               WHEN n % 17 = 0 THEN 'cancelled'
               WHEN n > 20 AND n % 23 = 0 THEN 'returned'
               WHEN n > 20 AND n % 19 = 0 THEN 'refunded'
               WHEN n <= 4 THEN 'pending'
               WHEN n <= 8 THEN 'paid'
               WHEN n <= 12 THEN 'processing'
               WHEN n <= 24 THEN 'shipped'
               ELSE 'delivered'
           END AS status
    FROM generate_series(1, 300) AS n
), lines AS (
    -- One to three different products per order, a few of them two at a time.
    SELECT g.n,
           jsonb_agg(jsonb_build_object('sku', p.sku, 'name', p.name, 'quantity', q.qty, 'unit_price_cents', p.price_cents) ORDER BY k)
               AS items,
           sum(q.qty * p.price_cents)::integer AS total_cents
    FROM g
    CROSS JOIN LATERAL generate_series(1, 1 + g.n % 3) AS k
    CROSS JOIN LATERAL (SELECT 1 + ((g.n + k) % 5 = 0)::integer AS qty) AS q
    JOIN products AS p ON p.idx = (g.n * 7 + k * 3) % 10 + 1
    GROUP BY g.n
), dated AS (
    SELECT g.*, l.items, l.total_cents,
           (ARRAY['UPS', 'FedEx', 'USPS', 'DHL'])[g.n % 4 + 1] AS carrier,
           CASE WHEN g.status IN ('shipped', 'delivered', 'returned', 'refunded')
                THEN g.placed_at + make_interval(hours => 20 + g.n % 3 * 12) END AS shipped_at,
           CASE WHEN g.status IN ('delivered', 'returned', 'refunded')
                THEN g.placed_at + make_interval(hours => 20 + g.n % 3 * 12, days => 2 + g.n % 4) END AS delivered_at
    FROM g JOIN lines AS l USING (n)
)
INSERT INTO orders (id, order_number, customer_id, status, total_cents, currency, items, carrier, tracking_number,
                    placed_at, shipped_at, delivered_at, updated_at)
SELECT d.n, (1000 + d.n)::text, d.customer_id, d.status, d.total_cents, 'USD', d.items,
       CASE WHEN d.shipped_at IS NOT NULL THEN d.carrier END,
       CASE WHEN d.shipped_at IS NULL THEN NULL
            WHEN d.carrier = 'UPS' THEN '1Z8K4C7E03' || lpad((d.n * 48271 % 100000000)::text, 8, '0')
            WHEN d.carrier = 'FedEx' THEN (770000000000 + d.n::bigint * 104729 % 100000000)::text
            WHEN d.carrier = 'USPS' THEN '92055' || lpad((d.n::bigint * 982451653 % 100000000000000000)::text, 17, '0')
            ELSE (1000000000 + d.n::bigint * 15485863 % 1000000000)::text
       END,
       d.placed_at, d.shipped_at, d.delivered_at,
       CASE WHEN d.status IN ('returned', 'refunded') THEN d.delivered_at + interval '9 days'
            ELSE coalesce(d.delivered_at, d.shipped_at, d.placed_at) END
FROM dated AS d
ORDER BY d.n
ON CONFLICT DO NOTHING;

-- The demo's order: Maya Patel's new kettle, on its way.
INSERT INTO orders (id, order_number, customer_id, status, total_cents, currency, items, carrier, tracking_number,
                    placed_at, shipped_at, delivered_at, updated_at)
VALUES (301, '4417', 1, 'shipped', 10300, 'USD',
        '[{"sku": "KC-KET-17", "name": "Aurora Electric Kettle 1.7 L", "quantity": 1, "unit_price_cents": 7900},
          {"sku": "KC-DSC-12", "name": "Descaling Tablets (12 pack)", "quantity": 2, "unit_price_cents": 1200}]',
        'UPS', '1Z8K4C7E0344170417', now() - interval '4 days', now() - interval '2 days 3 hours', NULL,
        now() - interval '2 days 3 hours')
ON CONFLICT DO NOTHING;

-- Hand out new ids after the seeded ones, but never move a sequence back.
SELECT setval('customers_id_seq', m)
FROM (SELECT max(id) AS m FROM customers) AS c, customers_id_seq AS s
WHERE m > CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END;
SELECT setval('orders_id_seq', m)
FROM (SELECT max(id) AS m FROM orders) AS c, orders_id_seq AS s
WHERE m > CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END;

-- Tickets, each on the customer's newest order in the given status (or none).
INSERT INTO {{tickets_table}} (customer_id, order_id, subject, description, status, priority, channel, idempotency_key,
                               created_at, updated_at)
SELECT v.customer_id,
       (SELECT o.id FROM orders AS o WHERE o.customer_id = v.customer_id AND o.status = v.order_status
        ORDER BY o.placed_at DESC LIMIT 1),
       v.subject, v.description, v.status, v.priority, v.channel, v.key,
       now() - v.age, now() - v.age + v.open_for
FROM (VALUES
    ('seed:ticket:01', 2, 'delivered', 'Kettle arrived with a dented lid',
     'The lid of the Aurora kettle is dented and does not close fully. Customer would like a replacement lid or kettle.',
     'open', 'normal', 'voice', interval '2 days', interval '0'),
    ('seed:ticket:02', 3, 'returned', 'No refund yet for a returned order',
     'Sent the order back two weeks ago and has not seen a refund on her card yet.',
     'in_progress', 'high', 'email', interval '6 days', interval '1 day'),
    ('seed:ticket:03', 5, 'delivered', 'Gooseneck kettle stopped heating',
     'Kettle powers on but does not heat since yesterday. Tried another outlet. Customer is hosting a tasting on Saturday.',
     'escalated', 'urgent', 'voice', interval '1 day', interval '3 hours'),
    ('seed:ticket:04', 31, 'processing', 'Change delivery address',
     'Customer moved; asked to ship to the new address before the order leaves the warehouse.',
     'resolved', 'low', 'chat', interval '4 days', interval '5 hours'),
    ('seed:ticket:05', 11, 'delivered', 'Descaling tablets missing from the box',
     'Order arrived without the descaling tablets listed on the packing slip.',
     'pending', 'normal', 'email', interval '9 days', interval '2 days'),
    ('seed:ticket:06', 1, NULL, 'Warranty on the Aurora kettle',
     'Asked how long the Aurora kettle is under warranty and whether registration is needed. Answered: two years, no registration.',
     'closed', 'low', 'voice', interval '30 days', interval '20 minutes'),
    ('seed:ticket:07', 10, 'paid', 'Charged twice for one order',
     'Customer sees two identical charges on the card for the same order.',
     'open', 'high', 'voice', interval '5 hours', interval '0'),
    ('seed:ticket:08', NULL, NULL, 'Store opening hours',
     'Caller asked whether the showroom is open on Sundays.',
     'closed', 'low', 'voice', interval '12 days', interval '5 minutes')
) AS v (key, customer_id, order_status, subject, description, status, priority, channel, age, open_for)
WHERE NOT EXISTS (SELECT 1 FROM {{tickets_table}} AS t WHERE t.idempotency_key = v.key)
ORDER BY v.key;

INSERT INTO {{interactions_table}} (ticket_id, customer_id, kind, summary, idempotency_key, created_at)
SELECT t.id, t.customer_id, v.kind, v.summary, v.key, t.created_at + v.after
FROM (VALUES
    ('seed:interaction:01', 'seed:ticket:01', 'call', 'Customer called about a dented lid; photos requested by email.', interval '0'),
    ('seed:interaction:02', 'seed:ticket:01', 'email', 'Customer sent two photos of the dent.', interval '3 hours'),
    ('seed:interaction:03', 'seed:ticket:02', 'email', 'Customer asks where the refund for her return is.', interval '0'),
    ('seed:interaction:04', 'seed:ticket:02', 'note', 'Warehouse confirmed the return arrived; refund queued, 5-10 business days to show on the card.', interval '1 day'),
    ('seed:interaction:05', 'seed:ticket:02', 'status_change', 'open -> in_progress', interval '1 day'),
    ('seed:interaction:06', 'seed:ticket:03', 'call', 'Kettle does not heat; basic troubleshooting did not help.', interval '0'),
    ('seed:interaction:07', 'seed:ticket:03', 'escalation', 'Escalated to tier 2 for an urgent replacement before Saturday.', interval '3 hours'),
    ('seed:interaction:08', 'seed:ticket:04', 'chat', 'Customer gave the new address; warehouse updated the shipping label.', interval '0'),
    ('seed:interaction:09', 'seed:ticket:04', 'status_change', 'open -> resolved', interval '5 hours'),
    ('seed:interaction:10', 'seed:ticket:05', 'email', 'Asked the customer for the order packing slip.', interval '1 day'),
    ('seed:interaction:11', 'seed:ticket:06', 'call', 'Explained the two-year warranty; no registration needed.', interval '0'),
    ('seed:interaction:12', 'seed:ticket:07', 'call', 'Customer sees a duplicate charge; one is likely a card authorization hold.', interval '0'),
    ('seed:interaction:13', 'seed:ticket:08', 'call', 'Showroom hours: Monday to Saturday 9-6, closed Sundays.', interval '0')
) AS v (key, ticket_key, kind, summary, after)
JOIN {{tickets_table}} AS t ON t.idempotency_key = v.ticket_key
WHERE NOT EXISTS (SELECT 1 FROM {{interactions_table}} AS i WHERE i.idempotency_key = v.key)
ORDER BY v.key;

INSERT INTO escalations (ticket_id, reason, priority, escalated_to, status, email_sent_at, idempotency_key, created_at)
SELECT t.id, 'Heating element failure; customer needs a replacement before Saturday.', 'urgent',
       'tier2@kettleandco.example', 'open', t.created_at + interval '3 hours 1 minute', 'seed:escalation:01',
       t.created_at + interval '3 hours'
FROM {{tickets_table}} AS t
WHERE t.idempotency_key = 'seed:ticket:03'
  AND NOT EXISTS (SELECT 1 FROM escalations AS e WHERE e.idempotency_key = 'seed:escalation:01');
