-- A batch's staged rows of one output into their lake table, matched by column name. {exclude} drops
-- the dedup's helper column where there is one.
INSERT INTO {table} BY NAME
SELECT * {exclude}
FROM {stage}
