-- The alert of sluice-one.lua as Alertmanager's webhook posts it (version 4, one alert), to
-- sluice's /v1/alertmanager?robot=console.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"version":"4","groupKey":"{}:{alertname=\\"dq check failed\\"}","status":"firing","receiver":"sluice","groupLabels":{"alertname":"dq check failed"},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am.example","alerts":[{"status":"firing","labels":{"alertname":"dq check failed","job":"dq_orders","table":"ods_orders","severity":"error"},"annotations":{"summary":"dq check failed: ods_orders null rate 3.2%"},"startsAt":"2026-12-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"0123456789abcdef"}]}'
