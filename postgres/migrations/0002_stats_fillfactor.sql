-- Every batch updates the statistics rows of the buckets it touches. With
-- room left on each page the new row versions stay on the same page
-- (heap-only tuples), so the primary key index is not updated each time.
ALTER TABLE stats_5m SET (fillfactor = 70);
ALTER TABLE stats_1h SET (fillfactor = 70);
