-- Every instance gets a compact surrogate key, and the history is keyed by it instead of the
-- two text names: both history B-trees, (instance_key, id) for idempotency and
-- (instance_key, time, id) for pages, then compare one int8 instead of two strings. On the
-- bench machine this raised the raw COPY rate into the history by ~1.6x.
ALTER TABLE twin_latest ADD COLUMN instance_key bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE twin_latest ADD CONSTRAINT twin_latest_instance_key_key UNIQUE (instance_key);
-- Room for HOT updates: the latest row of an instance is rewritten by every batch touching it,
-- and none of its indexed columns change.
ALTER TABLE twin_latest SET (fillfactor = 50);

-- No foreign key to twin_latest: its per-row check would cost as much as an index insert, and
-- the store writes and deletes both tables together.
CREATE TABLE twin_event_keyed (
    instance_key bigint      NOT NULL,
    id           text COLLATE "C" NOT NULL,
    type         text        NOT NULL,
    time         timestamptz NOT NULL,
    data         jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_key, id)
);

INSERT INTO twin_latest (interface_id, instance_id)
SELECT DISTINCT interface_id, instance_id FROM twin_event
ON CONFLICT DO NOTHING;

INSERT INTO twin_event_keyed (instance_key, id, type, time, data, received_at)
SELECT l.instance_key, e.id, e.type, e.time, e.data, e.received_at
FROM twin_event e JOIN twin_latest l USING (interface_id, instance_id);

DROP TABLE twin_event;
ALTER TABLE twin_event_keyed RENAME TO twin_event;
ALTER INDEX twin_event_keyed_pkey RENAME TO twin_event_pkey;

-- History pages (newest first, a backward scan) and the list of all events.
CREATE INDEX twin_event_by_time ON twin_event (instance_key, time, id);
