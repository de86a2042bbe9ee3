-- Dead letters: messages the platform gave up on, with why and the original payload and
-- headers, bounded by bytes (see crates/store/src/dead_letters.rs).
CREATE TABLE IF NOT EXISTS dead_letter (
    seq bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    origin text NOT NULL,
    reason text NOT NULL,
    headers jsonb NOT NULL,
    payload bytea NOT NULL,
    size bigint NOT NULL
);

-- One row: what the letters take, and how many were evicted to make room. Every change of
-- the letters locks it, so the bound holds across store replicas.
CREATE TABLE IF NOT EXISTS dead_letter_usage (
    id int PRIMARY KEY CHECK (id = 1),
    count bigint NOT NULL,
    bytes bigint NOT NULL,
    evicted bigint NOT NULL
);
INSERT INTO dead_letter_usage (id, count, bytes, evicted) VALUES (1, 0, 0, 0)
    ON CONFLICT (id) DO NOTHING;
