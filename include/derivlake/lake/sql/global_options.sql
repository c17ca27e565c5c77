-- The lake's global DuckLake options (name -> value): maintenance sets an option only when it differs,
-- since each set is a catalog snapshot that races the drains.
SELECT option_name, value
FROM lake.options()
WHERE scope = 'GLOBAL'
