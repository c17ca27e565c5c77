-- The lake's newest snapshot (what every reader sees now) and how many are kept for time travel.
SELECT max(snapshot_id), max(snapshot_time), count(*) FROM ducklake_snapshots('lake')
