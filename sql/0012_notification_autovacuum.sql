-- Escalator schema, version 12: autovacuum of the notification table, set for the table
-- from a measurement (bench/vacuum.py; the figures and the reasoning are in
-- docs/database.md, "Autovacuum of the notification table").
-- A notification is updated three to seven times within minutes of falling due (claimed,
-- sending, sent or failed, then its provider's status callbacks), or once when its
-- process is stopped (cancelled), and then not again until the hourly purge deletes it
-- with its process after the retention period (sql/0011_retention.sql, 30 days by
-- default). So the table holds about a retention period of rows, and its dead rows are
-- the updates among its newest rows and the deletes at its oldest end.
-- PostgreSQL vacuums a table once its dead rows outnumber autovacuum_vacuum_threshold +
-- autovacuum_vacuum_scale_factor x its rows (by default 50 + 0.2 x rows; RDS's parameter
-- group: 0.1): at 30 days of the month bench's profile (about 10.8 M rows, 1.2 to 1.7 M
-- dead a day), 2.2 M dead rows between vacuums a day and a half apart (RDS's: 1.1 M,
-- under a day apart). Here: one per cent of the rows, and at least 1,000, for smaller,
-- more frequent vacuums (about 110,000 dead rows, two hours apart). Measured in the
-- steady state, the purge running: a third of the dead rows at their most, a table and
-- indexes 7 to 9 % smaller for the rows kept, the server's CPU the same within the noise.
-- No fillfactor: only a status callback can be a HOT update (each move of the lifecycle
-- changes the state, which the partial indexes' predicates name, and indexed columns;
-- tests/integration/test_notification_autovacuum.py), and a reserve of a tenth of each
-- page (fillfactor 90), measured, made half again as many updates HOT and the indexes
-- 3 % smaller, but the table 12 % larger: 4 % more bytes for each row kept.
-- https://www.postgresql.org/docs/17/routine-vacuuming.html#AUTOVACUUM
-- https://www.postgresql.org/docs/17/sql-createtable.html#SQL-CREATETABLE-STORAGE-PARAMETERS
-- Expand only: the release before runs on unchanged. Setting autovacuum parameters takes
-- a SHARE UPDATE EXCLUSIVE lock (sql-altertable.html), which blocks neither reads nor
-- writes.
ALTER TABLE notification SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000
);
