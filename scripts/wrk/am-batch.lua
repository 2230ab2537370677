-- The same 100 alerts as sluice-batch.lua, in Alertmanager's /api/v2/alerts shape.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local alerts = {}
for i = 1, 100 do
  alerts[i] = string.format('{"labels":{"alertname":"dq check failed","job":"dq_orders","table":"ods_orders_%d","severity":"error"},"annotations":{"summary":"dq check failed: ods_orders_%d null rate 3.2%%"}}', i, i)
end
wrk.body = "[" .. table.concat(alerts, ",") .. "]"
