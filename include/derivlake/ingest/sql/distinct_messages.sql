-- The messages an output's staged rows come from (a book message explodes into many level rows).
SELECT count(DISTINCT {message_key})
FROM {stage}
