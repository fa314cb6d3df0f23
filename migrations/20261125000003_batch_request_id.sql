-- The id of the HTTP request that queued the batch (X-Request-Id, or one we made up), so
-- that a batch can be traced from the API's log lines to the worker's.
ALTER TABLE batches ADD COLUMN request_id text CHECK (char_length(request_id) BETWEEN 1 AND 128);
