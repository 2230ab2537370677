-- The alert of sluice-one.lua as a DingTalk text message to sluice's front door; the signed URL
-- (POST /robot/send?access_token=…&timestamp=…&sign=…) comes from the command line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"msgtype":"text","text":{"content":"dq check failed: ods_orders null rate 3.2% (job dq_orders, table ods_orders)"}}'
