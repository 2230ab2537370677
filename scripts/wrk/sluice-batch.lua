-- 100 alerts per POST to sluice's /v1/alerts (wrk -s scripts/wrk/sluice-batch.lua).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local alerts = {}
for i = 1, 100 do
  alerts[i] = string.format('{"robot":"console","title":"dq check failed: ods_orders_%d null rate 3.2%%","severity":"error","labels":{"job":"dq_orders","table":"ods_orders_%d"}}', i, i)
end
wrk.body = "[" .. table.concat(alerts, ",") .. "]"
