"""A MaxCompute/pyodps data-quality job's alert step, ported to Python 3: it signs like DingTalk's
official Python sample (HMAC-SHA256, base64, quote_plus) and POSTs one text message with urllib.
Only the webhook host differs from production: https://oapi.dingtalk.com -> sluice.

    python pyodps_job.py HOST:PORT ACCESS_TOKEN SECRET
    DINGTALK_HOST=... DINGTALK_TOKEN=... DINGTALK_SECRET=... python pyodps_job.py
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.parse
import urllib.request

args = sys.argv[1:] or [os.environ["DINGTALK_HOST"], os.environ["DINGTALK_TOKEN"],
                        os.environ["DINGTALK_SECRET"]]
host, token, secret = args

# In the real job these come from the ODPS query: o.execute_sql("select count(*) ...").
table, partition, rows, expected = "ods_user_login", "ds=20261201", 0, 1000000


def signed_url():
    timestamp = str(round(time.time() * 1000))
    string_to_sign = "{}\n{}".format(timestamp, secret)
    hmac_code = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                         digestmod=hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(hmac_code))
    return "http://{}/robot/send?access_token={}&timestamp={}&sign={}".format(
        host, token, timestamp, sign)


content = "数据质量告警: {} {} 行数 {}\n期望至少 {} 行, 请检查上游同步任务".format(
    table, partition, rows, expected)
body = json.dumps({"msgtype": "text", "text": {"content": content}}).encode("utf-8")
req = urllib.request.Request(signed_url(), data=body,
                             headers={"Content-Type": "application/json;charset=utf-8"})
with urllib.request.urlopen(req, timeout=10) as resp:
    answer = json.loads(resp.read().decode("utf-8"))
print(json.dumps(answer, ensure_ascii=False))
if answer.get("errcode") != 0:
    sys.exit(1)
