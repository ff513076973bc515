-- The failed quotes, oldest first: what an operator's requeue_failed request (reconcile)
-- scans to return quotes to pending, without reading every quote ever written.
CREATE INDEX quotes_failed_by_creation ON quotes (created_at) WHERE status = 'failed';
