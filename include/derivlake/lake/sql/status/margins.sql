-- The newest end-of-day margin reports (reports.margin_accounts exists once one was built): accounts, the
-- account x currency pairs in a margin call under either model, positions without a price.
SELECT
    as_of_date,
    count(DISTINCT account_id) AS accounts,
    count(DISTINCT (account_id, currency)) FILTER (WHERE margin_call) AS margin_calls,
    sum(unpriced_positions) FILTER (WHERE model = 'standard') AS unpriced_positions
FROM reports.margin_accounts
GROUP BY as_of_date
ORDER BY as_of_date DESC
LIMIT 7
