-- The same alert as sluice-one.lua, in Alertmanager's /api/v2/alerts shape.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '[{"labels":{"alertname":"dq check failed","job":"dq_orders","table":"ods_orders","severity":"error"},"annotations":{"summary":"dq check failed: ods_orders null rate 3.2%"}}]'
