-- Per account and currency, before the snapshot: net transfers (deposits minus withdrawals) and fees
-- paid (a maker rebate is a negative fee).
SELECT account_id, currency, fsum(deposits) AS deposits, fsum(fees) AS fees
FROM (
    SELECT account_id, currency, amount AS deposits, 0.0 AS fees
    FROM desk.transfers
    WHERE date <= {d} AND timestamp < {snapshot}
    UNION ALL
    SELECT account_id, fee_currency AS currency, 0.0 AS deposits, fee AS fees
    FROM desk.fills
    WHERE date <= {d} AND timestamp < {snapshot}
)
GROUP BY account_id, currency
ORDER BY account_id, currency
