SELECT
    instrument_name,
    arg_max(
        {{
            'kind': kind, 'base': base_currency, 'currency': settlement_currency,
            'inverse': instrument_type = 'reversed', 'strike': strike, 'option_type': option_type,
            'expiration': expiration_ts, 'perpetual': settlement_period = 'perpetual',
            'contract_size': contract_size, 'price_index': price_index
        }},
        valid_from
    ) AS s
FROM market.instruments
WHERE valid_from <= {snapshot}
GROUP BY instrument_name
