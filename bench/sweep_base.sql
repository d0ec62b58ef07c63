-- A base for timing the segmentation sweep: 100,000 customers (80% owned by 50 reps, 20% in
-- the shared pool, created over two years, one in seven with a stated need) and 500,000
-- interactions over the last 400 days (a fifth of them purchases, some complaints).
-- Run on a migrated, empty database, then time `crm recompute` twice (first: every customer
-- changes class; second: the steady state a scheduled sweep sees):
--   createdb -h 127.0.0.1 -U postgres crm_sweep
--   DATABASE_URL=postgresql://postgres@127.0.0.1:5432/crm_sweep ./dev crm migrate
--   psql -h 127.0.0.1 -U postgres -d crm_sweep -f bench/sweep_base.sql
--   time DATABASE_URL=postgresql://postgres@127.0.0.1:5432/crm_sweep ./dev crm recompute
\timing on
INSERT INTO users (email, password_hash, role)
SELECT 'rep' || g || '@example.com', 'x', 'sales' FROM generate_series(1, 50) AS g;

INSERT INTO customers (code, name, owner_id, created_at, core_needs, owner_assigned_at)
SELECT 'C20250101' || lpad(g::text, 6, '0'),
       '客户' || g || '有限公司',
       CASE WHEN g % 5 = 0 THEN NULL ELSE (SELECT min(id) FROM users) + g % 50 END,
       now() - make_interval(secs => random() * 720 * 86400),
       CASE WHEN g % 7 = 0 THEN '需要CRM' END,
       now() - make_interval(secs => random() * 720 * 86400)
  FROM generate_series(1, 100000) AS g;

INSERT INTO interactions (customer_id, occurred_at, channel, kind, direction, amount, resolved)
SELECT c, now() - make_interval(secs => random() * 400 * 86400), 'phone', k, 'outbound',
       CASE WHEN k = 'purchase' THEN round((random() * 50000)::numeric, 2) END,
       CASE WHEN k = 'complaint' THEN random() < 0.7 END
  FROM (SELECT (SELECT min(id) FROM customers) + floor(random() * 100000)::int AS c,
               (ARRAY['inquiry', 'follow_up', 'purchase', 'complaint', 'meeting'])
                   [1 + floor(random() * 5)::int] AS k
          FROM generate_series(1, 500000)) AS s;

VACUUM ANALYZE customers;
VACUUM ANALYZE interactions;
