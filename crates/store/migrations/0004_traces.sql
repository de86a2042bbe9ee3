-- The W3C trace context each event carried (CloudEvents distributed-tracing extension), kept
-- so that the chain of events one device message caused can be followed.
ALTER TABLE twin_event ADD COLUMN traceparent text, ADD COLUMN tracestate text;

-- The events of one trace, by trace id: characters 4–35 of a version-00 traceparent (the store
-- keeps only valid ones).
CREATE INDEX twin_event_by_trace ON twin_event (substr(traceparent, 4, 32))
    WHERE traceparent IS NOT NULL;
