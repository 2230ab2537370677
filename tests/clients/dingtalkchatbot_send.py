"""Sends one message of each DingTalk type with the DingtalkChatbot library (PyPI 1.5.7), as a
user of that library would, to the webhook given on the command line, and prints each answer as
one JSON line.

    python dingtalkchatbot_send.py 'http://127.0.0.1:9780/robot/send?access_token=T' SEC...

Only the host of the webhook differs from production (https://oapi.dingtalk.com/robot/send?...).
"""
import json
import sys

from dingtalkchatbot.chatbot import ActionCard, CardItem, DingtalkChatbot, FeedLink

webhook, secret = sys.argv[1], sys.argv[2]
bot = DingtalkChatbot(webhook, secret=secret)

answers = [
    ("text", bot.send_text(
        msg="dq_orders 行数为 0\npartition ds=20261201 of dq_orders is empty",
        at_mobiles=["13800000000"])),
    ("markdown", bot.send_markdown(
        title="nightly ETL failed",
        text="#### nightly ETL failed\n> step load_users exited 1\n\n[log](http://ci.example/42)",
        is_at_all=True)),
    ("actionCard", bot.send_action_card(ActionCard(
        title="deploy api v2.3.1 失败",
        text="### deploy api v2.3.1 失败\nrollout stuck at 3/10 pods",
        btns=[CardItem(title="控制台", url="http://ci.example/deploy/7")]))),
    ("feedCard", bot.send_feed_card([
        FeedLink(title="weekly report: sluice", message_url="http://wiki.example/w/1",
                 pic_url="http://wiki.example/1.png"),
        CardItem(title="weekly report: ingest", url="http://wiki.example/w/2",
                 pic_url="http://wiki.example/2.png"),
    ])),
]
for msgtype, answer in answers:
    print(json.dumps({"msgtype": msgtype, "answer": answer}, ensure_ascii=False))
