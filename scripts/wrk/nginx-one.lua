-- The body of sluice-one.lua, posted to nginx answering a bare 202: the machine's HTTP ceiling.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"robot":"console","title":"dq check failed: ods_orders null rate 3.2%","severity":"error","labels":{"job":"dq_orders","table":"ods_orders"}}'
