# Split and join strings of words and numbers.
import sys

rounds = int(sys.argv[1])
words = ["pool", "arena", "block", "size", "class", "heap", "free", "list"]
total = 0
for r in range(rounds):
    text = " ".join(words[(i * 7 + r) % len(words)] + str(i * 7919 % 10007) for i in range(3000))
    parts = text.split(" ")
    csv = ",".join(p.upper() for p in parts)
    lines = "\n".join(csv[i : i + 60] for i in range(0, len(csv), 60)).splitlines()
    fields = [f.strip("0123456789") for f in csv.split(",")]
    total += len(parts) + len(lines) + sum(map(len, fields)) + len(csv.replace("POOL", "p"))
    del text, parts, csv, lines, fields
print(total)
