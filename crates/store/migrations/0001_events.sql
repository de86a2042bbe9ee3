-- History of twin events and latest state of every twin instance.
-- Keys use the "C" collation: byte order, the order cursors and the embedded backend use.
-- History is keyed by (interface, instance, id): a redelivered event is stored once.
CREATE TABLE twin_event (
    interface_id text COLLATE "C" NOT NULL,
    instance_id  text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    type         text        NOT NULL,
    time         timestamptz NOT NULL,
    data         jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (interface_id, instance_id, id)
);

-- History pages (newest first, a backward scan) and the list of all events.
CREATE INDEX twin_event_by_time ON twin_event (interface_id, instance_id, time, id);

-- Latest state, upserted in the same transaction as the history.
-- merge_tree is the order-independent form of the state (ktwin_store::MergeTree as JSON
-- bytes, opaque to SQL; NULL before the first event); state is its materialized value.
CREATE TABLE twin_latest (
    interface_id text COLLATE "C" NOT NULL,
    instance_id  text COLLATE "C" NOT NULL,
    last_id      text        NOT NULL DEFAULT '',
    last_type    text        NOT NULL DEFAULT '',
    last_time    timestamptz NOT NULL DEFAULT 'epoch',
    event_count  bigint      NOT NULL DEFAULT 0,
    state        jsonb       NOT NULL DEFAULT '{}',
    merge_tree   bytea,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (interface_id, instance_id)
);
