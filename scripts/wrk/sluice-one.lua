-- One alert per POST to sluice's /v1/alerts (wrk -s scripts/wrk/sluice-one.lua).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"robot":"console","title":"dq check failed: ods_orders null rate 3.2%","severity":"error","labels":{"job":"dq_orders","table":"ods_orders"}}'
