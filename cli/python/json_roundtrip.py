# JSON round trips of documents of small records.
import json
import sys

rounds = int(sys.argv[1])
total = 0
for r in range(rounds):
    doc = {
        "round": r,
        "users": [
            {"name": "user%d" % i, "id": i, "score": i / 3.0, "active": i % 3 == 0, "tags": ["a", "b", str(i % 10)]}
            for i in range(400)
        ],
    }
    text = json.dumps(doc)
    back = json.loads(text)
    again = json.dumps(back, sort_keys=True)
    total += len(text) + len(again) + sum(u["id"] for u in back["users"])
    del doc, text, back, again
print(total)
