-- name: model_version_changes
-- question: When did a provider start answering a requested model with a different versioned
--   model (model_response)? One row per (provider, requested model, response) seen in the
--   window, with its first and last sighting and call count; previous_response is the version
--   seen first before it ('' for the earliest), so rows with previous_response != '' are changes.
-- param: since DateTime64(3, 'UTC')
-- param: until DateTime64(3, 'UTC')
-- param: tenant String = ''
SELECT
    provider,
    model_requested AS model,
    model_response,
    first_seen,
    last_seen,
    calls,
    lagInFrame(model_response, 1, '') OVER (
        PARTITION BY provider, model ORDER BY first_seen, model_response
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS previous_response
FROM
(
    SELECT provider, model_requested, model_response, min(start_time) AS first_seen,
           max(start_time) AS last_seen, count() AS calls
    FROM ${database}.spans
    WHERE start_time >= {since:DateTime64(3, 'UTC')} AND start_time < {until:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant_id = {tenant:String})
      AND model_requested != '' AND model_response != ''
    GROUP BY provider, model_requested, model_response
)
ORDER BY provider, model, first_seen, model_response
