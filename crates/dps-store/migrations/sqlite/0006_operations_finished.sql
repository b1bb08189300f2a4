-- Operation retention at scale (#15 item 5): finished operations by age, for the purge. It deletes a bounded
-- batch per statement, oldest first, walking this partial index from its start: each batch touches only the
-- rows it deletes, never the (status, updated) entries of the recent rows that a day of registrations leaves.
CREATE INDEX operations_finished ON operations (updated) WHERE status <> 'assigning';
